"""Errors meant for a person: each message says what went wrong and what to do about it."""


class StudioError(Exception):
    """Base of every error whose message is shown to the user as it is."""


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
