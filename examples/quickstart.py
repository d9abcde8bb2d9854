"""Quickstart: data on disk -> fit() -> safetensors -> segment() -> pictures, in about a minute.

Run with no arguments from the repository root::

    python examples/quickstart.py

It writes everything under ``./outputs/quickstart/``:

- ``data/images/NN.png`` and ``data/masks/NN.png``: a small synthetic data set of circles
  (class 1) and squares (class 2) on a noisy background, masks drawn as RGB colours (one
  colour per class, the way people draw masks in an image editor);
- ``model/``: ``config.json``, ``model.safetensors`` and a ``README.md`` model card;
- ``training.png``: loss, validation scores and learning rate per epoch;
- ``holdout_overlay.png`` and ``holdout_mask.png``: the prediction on an image the model
  never saw, as an overlay and as a mask in the same colours as the training masks;
- ``holdout_compare.png``: that image, its true labels and the prediction side by side.

It prints where they are and the mean IoU on held-out images. Seeded: the data are
identical on every run; the training budget is wall-clock time, so the number of steps
(and the last digits of the score) depend on the machine's speed.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import unetseg
from unetseg.metrics import confusion_matrix, scores_from_confusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import CLASS_COLORS, CLASS_NAMES, scenes, to_color_mask


def write_dataset(folder: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Write ``n`` image/mask PNG pairs (masks as RGB colours) into ``folder``."""
    images, labels = scenes(n, seed=seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image).save(folder / "images" / f"{i:02d}.png")
        Image.fromarray(to_color_mask(label)).save(folder / "masks" / f"{i:02d}.png")
    return folder / "images", folder / "masks"


def main(
    out_dir: str | Path = "outputs/quickstart",
    *,
    max_time: float = 60.0,
    n_train: int = 40,
    n_holdout: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> float:
    """Run the whole workflow; return the held-out mean IoU."""
    out = Path(out_dir)
    torch.manual_seed(seed)

    # 1. Data: a folder of images and a folder of RGB colour masks, paired by file name.
    image_dir, mask_dir = write_dataset(out / "data", n_train, seed)
    data = unetseg.SegmentationDataset(
        image_dir,
        mask_dir,
        color_map=list(CLASS_COLORS),  # colour i is class i
        class_names=CLASS_NAMES,
    )  # logs data.describe(): sizes, channels, encoding, classes and their pixel shares

    # 2. Train: the default recipe, stopped by a wall-clock budget; 20% held out to validate.
    model = unetseg.UNet(in_channels=data.in_channels, num_classes=data.num_classes)
    history = unetseg.fit(
        model, data, val_data=0.2, max_time=max_time, patch_size=128, seed=seed, progress=progress
    )

    # 3. Save (safetensors + config.json + model card) and load it back, as a user would.
    model_dir = model.save_pretrained(out / "model")
    model = unetseg.UNet.from_pretrained(model_dir)

    # 4. Segment images the model never saw, larger than the training images.
    holdout_images, holdout_labels = scenes(n_holdout, seed=seed + 1000, height=192, width=256)
    predictions = unetseg.segment(model, list(holdout_images), progress=False)
    confusion = sum(
        confusion_matrix(torch.from_numpy(p.astype(np.int64)), torch.from_numpy(t), 3)
        for p, t in zip(predictions, holdout_labels, strict=True)
    )
    scores = scores_from_confusion(confusion)

    # 5. Pictures: a held-out image showing every class, with its prediction; the curves.
    i = max(range(n_holdout), key=lambda j: len(np.unique(holdout_labels[j])))
    unetseg.save_overlay(out / "holdout_overlay.png", holdout_images[i], predictions[i], model)
    unetseg.save_mask(out / "holdout_mask.png", predictions[i], model)
    panels = [
        holdout_images[i],
        unetseg.colorize(holdout_labels[i], model),
        unetseg.colorize(predictions[i], model),
    ]
    Image.fromarray(np.concatenate(panels, axis=1)).save(out / "holdout_compare.png")
    history.plot(out / "training.png")

    print(f"\ntrained {history.steps} steps in {history.seconds:.0f} s ({len(history)} epochs)")
    print(f"best validation mIoU {history.best_mean_iou:.3f} (epoch {history.best_epoch})")
    per_class = ", ".join(f"{n} {v:.3f}" for n, v in zip(CLASS_NAMES, scores.iou, strict=True))
    print(f"held-out mIoU {scores.mean_iou:.3f} ({per_class})")
    for what, path in [
        ("weights", model_dir / "model.safetensors"),
        ("overlay", out / "holdout_overlay.png"),
        ("mask   ", out / "holdout_mask.png"),
        ("compare", out / "holdout_compare.png"),
        ("curves ", out / "training.png"),
    ]:
        print(f"{what}: {path}")
    return scores.mean_iou


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.monotonic()
    main()
    print(f"done in {time.monotonic() - start:.0f} s")
