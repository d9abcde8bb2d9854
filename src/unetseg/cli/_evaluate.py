"""``unetseg evaluate``: a model's IoU and Dice per class on images with true masks."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from .._utils import pick_device
from ..data import SegmentationDataset
from ..infer import segment
from ..metrics import confusion_matrix, scores_from_confusion
from ._common import EXIT_OK, MODEL_HELP, CommandError, add_inference_flags, load_model

__all__ = ["HELP", "add_arguments", "run"]

HELP = """\
Masks are decoded with the model's own mapping (its mask values or colours and
ignore_index), so a test set may lack a class. Images pair with masks by file stem.

examples:
  unetseg evaluate model test/images test/masks
  unetseg evaluate model test/images test/masks --json > scores.json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``evaluate`` flags, and ``run`` as the handler."""
    p.set_defaults(handler=run)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("images", metavar="IMAGES", help="folder of images")
    p.add_argument("masks", metavar="MASKS", help="folder of true masks, paired by file stem")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_inference_flags(p, tiles=False)


def run(args: argparse.Namespace) -> int:
    """Score the model on every pair, print a table (or JSON)."""
    model = load_model(args.model, pick_device(args.device, error=CommandError))
    # like=model: masks decode with the model's mapping (a test set decoded on its own
    # could lack a class and number the rest differently), palette PNGs written by
    # 'segment' included; images are checked, paired and sized against their masks.
    data = SegmentationDataset(
        args.images, args.masks, like=model, augment=False, progress=not args.no_progress
    )
    config = model.config
    k = config.num_classes
    images = [image for image, _ in data.paths if image is not None]  # folders: all paths
    confusion = torch.zeros(k, k, dtype=torch.int64)
    for start in range(0, len(images), args.batch_size):
        chunk = images[start : start + args.batch_size]
        predictions = segment(
            model, chunk, tta=args.tta, amp=args.amp, batch_size=args.batch_size, progress=False
        )
        for index, prediction in enumerate(predictions, start):
            confusion += confusion_matrix(
                torch.from_numpy(prediction.astype(np.int64)),
                data[index][1],
                k,
                ignore_index=config.ignore_index,
            )
    scores = scores_from_confusion(confusion)
    names = config.class_names or tuple(f"class_{i}" for i in range(k))
    support = confusion.sum(dim=1).tolist()

    def number(value: float) -> float | None:  # JSON has no NaN
        return None if math.isnan(value) else value

    report = {
        "model": args.model,
        "images": len(images),
        "pixels": int(confusion.sum()),
        "mean_iou": number(scores.mean_iou),
        "mean_dice": number(scores.mean_dice),
        "pixel_accuracy": number(scores.pixel_accuracy),
        "classes": [
            {"index": i, "name": name, "iou": number(iou), "dice": number(dice), "pixels": n}
            for i, (name, iou, dice, n) in enumerate(
                zip(names, scores.iou, scores.dice, support, strict=True)
            )
        ],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK

    def cell(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.4f}"

    width = max(5, *(len(name) for name in names))
    print(f"{len(images)} image(s), {int(confusion.sum()):,} pixels scored")
    print(f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}  {'pixels':>12}")
    for name, iou, dice, n in zip(names, scores.iou, scores.dice, support, strict=True):
        print(f"{name:<{width}}  {cell(iou):>7}  {cell(dice):>7}  {n:>12,}")
    print(
        f"mean IoU {cell(scores.mean_iou)}   mean Dice {cell(scores.mean_dice)}   "
        f"pixel accuracy {cell(scores.pixel_accuracy)}"
    )
    return EXIT_OK
