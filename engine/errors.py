"""Errors that reach the user as a one-line message (no traceback).

Every error raised for bad input derives from :class:`EngineError` and names the
file or the config field at fault. The CLI prints ``str(error)`` and exits with
status 2; the studio shows it in a dialog.
"""


class EngineError(Exception):
    """Base class for errors caused by user input or the environment."""


class ConfigError(EngineError):
    """A hyperparameter or config field is invalid; the message names the field."""


class DatasetError(EngineError):
    """A dataset folder or image file cannot be used; the message names the path."""


class CheckpointError(EngineError):
    """A checkpoint or adapted-classifier file is missing, corrupt or unsafe."""


class TrainingError(EngineError):
    """Training cannot continue (non-finite loss, out of memory, ...)."""


class RunForceStopped(TrainingError):
    """The run's training process was ended on request (a run that did not stop when asked): the
    steps after its last checkpoint are lost, the run reads as interrupted and can be continued."""


def describe_exception(error: BaseException) -> str:
    """The one-line message a user sees: an EngineError's own text, else type and message."""
    if isinstance(error, EngineError):
        return str(error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
