"""Errors meant for people: each says what was expected and how to fix it.

`BadInputError` covers what the user gave (a value, a file, a run folder): the command line exits
with 2 on them and with 1 on anything else (`TrainingDivergedError`, a bug).
"""


class VablibError(Exception):
    """Base class of every error vablib raises on purpose."""


class BadInputError(VablibError):
    """Base class of the errors caused by the input: a parameter, a data file, a run folder."""


class ConfigError(BadInputError, ValueError):
    """A parameter has a wrong type or value."""


class DataNotFoundError(BadInputError, FileNotFoundError):
    """A dataset or an upstream artifact is missing."""


class DataFormatError(BadInputError, ValueError):
    """Data exists but has the wrong keys, shapes, dtypes or label range."""


class CheckpointError(BadInputError, ValueError):
    """A checkpoint is corrupted, foreign, or was written by another configuration."""


class RunConflictError(BadInputError, ValueError):
    """A run folder was made with other parameters than the ones asked for now."""


class TrainingDivergedError(VablibError, RuntimeError):
    """The loss became NaN or infinite."""
