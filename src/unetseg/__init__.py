"""unetseg: semantic segmentation with a U-Net — data in any encoding, fit(), segment().

The public API is what this module exports; everything else may change.
"""

from __future__ import annotations

import logging

from .config import UNetConfig
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    InputError,
    TrainingError,
    UnetsegError,
    WeightsError,
)
from .history import History
from .model import UNet
from .train import fit

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "History",
    "ImageError",
    "InputError",
    "TrainingError",
    "UNet",
    "UNetConfig",
    "UnetsegError",
    "WeightsError",
    "__version__",
    "fit",
]

# A library must not configure logging; users opt in with logging.basicConfig().
logging.getLogger("unetseg").addHandler(logging.NullHandler())
