"""Numpy in, numpy out: train on image and label arrays, get a label array back.

The flow of the classic U-Net tutorial, without any files: images are (H, W, 3) uint8
arrays and labels are drawn in colours, one RGB colour per class, as (H, W, 3) arrays.
``SegmentationDataset`` turns the colours into classes with ``color_map``; ``segment()``
returns an (H, W) array of class indices, and ``colorize`` paints it back in the same
colours. Run with no arguments (about a minute on 2 CPU cores)::

    python examples/numpy_arrays.py
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch

import unetseg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import CLASS_COLORS, CLASS_NAMES, scenes, to_color_mask


def main(*, max_time: float = 45.0, n_train: int = 32, seed: int = 0) -> np.ndarray:
    """Train on arrays, segment a new array; return its (H, W) uint8 class-index mask."""
    torch.manual_seed(seed)
    images, labels = scenes(n_train, seed=seed)  # (N, 128, 128, 3) uint8, (N, 128, 128)
    colour_labels = [to_color_mask(label) for label in labels]  # (128, 128, 3) uint8 each

    # A stacked (N, H, W, 3) array or a list of arrays; labels as colour arrays + color_map.
    # (Integer (H, W) label arrays work too: then no color_map is needed.)
    data = unetseg.SegmentationDataset(
        images, colour_labels, color_map=list(CLASS_COLORS), class_names=CLASS_NAMES
    )
    model = unetseg.UNet(in_channels=data.in_channels, num_classes=data.num_classes)
    unetseg.fit(model, data, val_data=0.2, max_time=max_time, patch_size=128, seed=seed)

    # Any (H, W, 3) array of any size; the same preprocessing as in training is applied.
    new_images, new_labels = scenes(1, seed=seed + 1000, height=160, width=200)
    mask = unetseg.segment(model, new_images[0], progress=False)  # (160, 200) uint8 0..2
    colours = unetseg.colorize(mask, model)  # (160, 200, 3) uint8 in CLASS_COLORS

    accuracy = float((mask == new_labels[0]).mean())
    print(f"input {new_images[0].shape} {new_images[0].dtype} -> mask {mask.shape} {mask.dtype}")
    print(f"classes in the mask: {sorted(np.unique(mask).tolist())}; colour image {colours.shape}")
    print(f"pixel accuracy on the new image: {accuracy:.3f}")
    return mask


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
