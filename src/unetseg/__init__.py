"""unetseg: semantic segmentation with a U-Net — data in any encoding, fit(), segment().

The public API is what this module exports; everything else may change.
"""

from __future__ import annotations

from .augment import Augment
from .config import UNetConfig
from .data import SegmentationDataset
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
from .infer import segment, segment_iter
from .model import UNet
from .train import fit
from .visualize import colorize, overlay, save_mask, save_overlay, to_mask_values

__version__ = "0.1.0"

__all__ = [
    "Augment",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "History",
    "ImageError",
    "InputError",
    "SegmentationDataset",
    "TrainingError",
    "UNet",
    "UNetConfig",
    "UnetsegError",
    "WeightsError",
    "__version__",
    "colorize",
    "fit",
    "overlay",
    "save_mask",
    "save_overlay",
    "segment",
    "segment_iter",
    "to_mask_values",
]
