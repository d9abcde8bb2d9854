"""Fine-tune saved weights to a new number of classes.

Two steps, each a short training run:

1. a 2-class model learns "shape or background" from 0/255 masks and is saved with
   ``save_pretrained`` (``config.json`` + ``model.safetensors`` + model card);
2. ``UNet.from_pretrained(folder, num_classes=3)`` loads every layer but the output head,
   which is freshly initialised for 3 classes (background, circle, square); the old
   classes' names, mask values and metrics are dropped from the config, the input's
   channels and mean/std are kept. ``fit()`` then trains it on the 3-class masks.

Run with no arguments (about a minute and a half on 2 CPU cores)::

    python examples/finetune.py

To fine-tune your own checkpoint, or one from the Hugging Face Hub, pass its folder or
repo id to ``UNet.from_pretrained(..., num_classes=K)`` the same way.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch

import unetseg
from unetseg.metrics import confusion_matrix, scores_from_confusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import CLASS_NAMES, scenes


def main(
    out_dir: str | Path = "outputs/finetune",
    *,
    pretrain_time: float = 40.0,
    finetune_time: float = 40.0,
    n_train: int = 32,
    seed: int = 0,
) -> float:
    """Pretrain a 2-class model, fine-tune it to 3 classes; return the held-out mIoU."""
    out = Path(out_dir)
    torch.manual_seed(seed)
    images, labels = scenes(n_train, seed=seed)

    # 1. A binary task: 0 = background, 255 = any shape (masks as 0/255 arrays).
    binary = unetseg.SegmentationDataset(images, [np.where(t > 0, 255, 0) for t in labels])
    model = unetseg.UNet(in_channels=binary.in_channels, num_classes=2)
    unetseg.fit(model, binary, val_data=0.2, max_time=pretrain_time, patch_size=128, seed=seed)
    pretrained = model.save_pretrained(out / "binary")
    print(f"pretrained: {pretrained} (classes {model.config.class_names})")

    # 2. The same layers, a new 3-class head. The data must use the saved mean/std, since
    #    the loaded layers were trained on images normalised with them.
    model = unetseg.UNet.from_pretrained(pretrained, num_classes=3)
    shapes = unetseg.SegmentationDataset(
        images,
        list(labels),
        class_names=CLASS_NAMES,
        mean=model.config.image_mean,
        std=model.config.image_std,
    )
    unetseg.fit(model, shapes, val_data=0.2, max_time=finetune_time, patch_size=128, seed=seed)
    finetuned = model.save_pretrained(out / "shapes")

    test_images, test_labels = scenes(4, seed=seed + 1000)
    predictions = unetseg.segment(unetseg.UNet.from_pretrained(finetuned), list(test_images))
    confusion = sum(
        confusion_matrix(torch.from_numpy(p.astype(np.int64)), torch.from_numpy(t), 3)
        for p, t in zip(predictions, test_labels, strict=True)
    )
    miou = scores_from_confusion(confusion).mean_iou
    print(f"fine-tuned: {finetuned} (classes {model.config.class_names})")
    print(f"held-out mIoU of the fine-tuned 3-class model: {miou:.3f}")
    return miou


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
