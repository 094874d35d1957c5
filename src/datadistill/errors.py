"""Exceptions raised for bad user input. The CLI prints their message on one line and exits 2."""

from collections.abc import Iterator
from contextlib import contextmanager


class DatadistillError(Exception):
    """Base class of every error caused by user input (bad value, missing or corrupt file)."""


class ConfigError(DatadistillError, ValueError):
    """A setting has a value outside what is accepted; the message names the field and the range."""


class UnknownNameError(ConfigError):
    """An unknown dataset, method or model name; the message lists the accepted names."""


class DatasetNotFoundError(DatadistillError, FileNotFoundError):
    """A dataset is not on disk; the message says which command prepares it."""


class DatasetLayoutError(DatadistillError, ValueError):
    """A dataset's files are on disk but malformed (missing column, unknown label, missing image,
    mixed image sizes); the message names the file (and row)."""


class SyntheticSetFileError(DatadistillError):
    """A synthetic-set file is missing, corrupt or not written by datadistill."""


class ScoresFileError(DatadistillError):
    """A difficulty-scores file is missing, corrupt or not written by datadistill."""


class TrajectoryFileError(DatadistillError):
    """An expert-trajectory folder or file is missing, corrupt or not written by datadistill."""


class NonFiniteLossError(DatadistillError, FloatingPointError):
    """The matching loss became NaN or infinite; the synthetic set of the previous step is kept."""


class ModelFileError(DatadistillError):
    """A saved-model file is missing, corrupt, not written by datadistill, or does not fit its model."""


@contextmanager
def error_context(context: str) -> Iterator[None]:
    """Re-raise a DatadistillError with ``context: `` in front of its message (same class), e.g. the
    grid cell or the method whose settings were wrong."""
    try:
        yield
    except DatadistillError as exc:
        raise type(exc)(f"{context}: {exc}") from None


class CheckpointError(DatadistillError):
    """A run's checkpoint cannot be written (unwritable folder, full disk) or read (truncated,
    corrupt, foreign), or was written with other settings; the message names the folder."""


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped a run after its current step (a checkpoint was written when one could
    be). Not a :class:`DatadistillError`: a grid must not record it as a failed cell and go on. The
    CLI prints the message (how to resume) and exits with :attr:`exit_status` (130 or 143)."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status
