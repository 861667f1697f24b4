"""Errors meant for people: each says what was expected and how to fix it."""


class VablibError(Exception):
    """Base class of every error vablib raises on purpose."""


class ConfigError(VablibError, ValueError):
    """A parameter has a wrong type or value."""


class DataNotFoundError(VablibError, FileNotFoundError):
    """A dataset or an upstream artifact is missing."""


class DataFormatError(VablibError, ValueError):
    """Data exists but has the wrong keys, shapes, dtypes or label range."""


class CheckpointError(VablibError, ValueError):
    """A checkpoint is corrupted, foreign, or was written by another configuration."""


class RunConflictError(VablibError, ValueError):
    """A run folder was made with other parameters than the ones asked for now."""


class TrainingDivergedError(VablibError, RuntimeError):
    """The loss became NaN or infinite."""
