"""The library's own exception types.

Every error a user can cause is one of these, so callers can catch ``UnetsegError``
or the familiar built-in base (``ValueError``/``OSError``) it also derives from.
Messages name the file or value at fault and say what to do instead.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ImageError",
    "InputError",
    "TrainingError",
    "UnetsegError",
    "WeightsError",
]


class UnetsegError(Exception):
    """Base class of every exception raised on purpose by unetseg."""


class ConfigError(UnetsegError, ValueError):
    """A model configuration value is of the wrong type, out of range or unknown."""


class ImageError(UnetsegError, ValueError):
    """An image or mask file cannot be read, or holds values that cannot be used."""


class DatasetError(UnetsegError, ValueError):
    """Training data is missing, unpaired, inconsistent or in an unusable encoding."""


class InputError(UnetsegError, ValueError):
    """An input given to ``segment()`` cannot be turned into what the model takes."""


class TrainingError(UnetsegError, RuntimeError):
    """Training cannot go on (a non-finite loss, say) or cannot resume."""


class CheckpointError(UnetsegError, OSError):
    """A training checkpoint is missing, incomplete or corrupt."""


class WeightsError(UnetsegError, OSError):
    """Saved weights are missing, unsafe, corrupt or disagree with the configuration."""
