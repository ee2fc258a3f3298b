"""Errors meant for a person: each message says what went wrong and what to do about it."""


from typing import Any


class StudioError(Exception):
    """Base of every error whose message is shown to the user as it is.

    The message is English. Where the app shows it in another language, `key` names the message
    and `values` fill it (`demo.text.messages` holds the translations by key), so a translation
    never depends on the English wording."""

    def __init__(self, message: str = "", *, key: str | None = None, **values: Any) -> None:
        super().__init__(message)
        self.key, self.values = key, values

    def __reduce__(self):  # rebuilt with its key and values when it crosses a process
        return _rebuild, (type(self), str(self), self.key, self.values)


def quoted(exc: BaseException) -> dict[str, Any]:
    """The values that quote another error inside a message: its text, and its key and values
    where it has them (so the quote is translated too)."""
    return {"detail": str(exc), "detail_key": getattr(exc, "key", None),
            "detail_values": dict(getattr(exc, "values", None) or {})}


def _rebuild(cls: type, message: str, key: str | None, values: dict) -> StudioError:
    error = cls.__new__(cls)
    StudioError.__init__(error, message, key=key, **values)
    return error


class BackboneUnavailable(StudioError):
    """The vision-language backbone cannot be loaded (not downloaded, offline, broken files)."""


class PromptError(StudioError, ValueError):
    """The task set-up (classes, template, descriptions, prompt settings) is not usable."""


class CheckpointError(StudioError, ValueError):
    """A saved prompt file cannot be used: corrupt, not safetensors, or made for another model."""


class TrainingError(StudioError, ValueError):
    """The labelled examples or the training settings cannot be trained on."""


class ScanError(StudioError, ValueError):
    """An uploaded file cannot be shown as a medical image: not an image, damaged, too large, or
    compressed in a way no installed decoder reads. The message speaks to a clinician and never
    quotes patient data from the file."""


class DatasetError(StudioError, ValueError):
    """A labelled image set cannot be used for evaluation or reproduction: a data set folder not
    in the public layout (no split file, a missing split, a missing image, an unknown class), or
    evaluation images and labels that do not match the classes. The message names the file or
    class at fault and says how to fix it."""
