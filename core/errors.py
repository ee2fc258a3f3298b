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
