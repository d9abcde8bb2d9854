"""Benchmark the default fit() recipe on ISBI 2012 membranes (issue 4's target).

Train on slices 00-24 for ``--max-time`` seconds with every default, score mean IoU of the
two classes and pixel accuracy on full 512x512 slices 25-29::

    PYTHONPATH=src python benchmarks/bench_train.py              # the target: 300 s, defaults
    PYTHONPATH=src python benchmarks/bench_train.py --max-time 90 --lr 1e-3 --loss ce

With no options this runs exactly
``fit(UNet(in_channels=1, num_classes=2), SegmentationDataset(images, masks), max_time=300)``
(``progress=False`` only keeps the bar out of the printed JSON) and scores
``segment(model, image)`` on each test slice; the same model is also scored with
``segment(..., tta=True)`` and with ``segment(..., amp="off")`` (float32 inference). Recipe overrides (``--lr``, ``--epochs``, ``--elastic`` ...)
exist for tuning only; the target uses none of them.

Prints one JSON line: mean IoU, pixel accuracy, per-class IoU (also with flip TTA),
optimizer steps, images/s, wall time, nproc and torch threads. Wall-clock figures depend on what else runs on the
machine; compare options back to back, or at a fixed ``--epochs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import unetseg
from unetseg import UNet
from unetseg.metrics import confusion_matrix, scores_from_confusion
from unetseg.train import fit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"
TRAIN, TEST = range(25), range(25, 30)


def isbi_paths(root: Path, ids: range) -> tuple[list[Path], list[Path]]:
    names = [f"{i:02d}.png" for i in ids]
    return [root / "images" / n for n in names], [root / "masks" / n for n in names]


def load_mask(mask_path: Path) -> np.ndarray:
    """The ground truth as the data README defines it: 0/255 -> classes 0/1."""
    return (np.asarray(Image.open(mask_path)) > 127).astype(np.int64)


def make_dataset(images: list[Path], masks: list[Path], elastic: float | None) -> Any:
    data = unetseg.SegmentationDataset(images, masks)
    if elastic is not None:  # tuning only: the default recipe's augmentation with elastic set
        data = data.with_augment(unetseg.Augment(elastic=elastic))
    return data


@torch.no_grad()
def score(
    model: UNet, images: list[Path], masks: list[Path], *, tta: bool, amp: str = "auto"
) -> dict[str, float]:
    """Full-slice predictions from segment(), one confusion matrix over the test slices."""
    confusion = torch.zeros(2, 2, dtype=torch.int64)
    for image_path, mask_path in zip(images, masks, strict=True):
        truth = torch.from_numpy(load_mask(mask_path))
        pred = unetseg.segment(model, image_path, tta=tta, amp=amp, progress=False)
        pred = torch.from_numpy(pred)
        confusion += confusion_matrix(pred.long(), truth, 2)
    s = scores_from_confusion(confusion)
    return {"mean_iou": s.mean_iou, "pixel_accuracy": s.pixel_accuracy, "iou": list(s.iou)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument(
        "--epochs", type=int, default=None, help="tuning: fixed epochs, no time limit"
    )
    parser.add_argument("--elastic", type=float, default=None, help="tuning: Augment(elastic=)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    for name, kind in [
        ("lr", float),
        ("batch-size", int),
        ("loss", str),
        ("patch-size", int),
        ("weight-decay", float),
        ("warmup", float),
        ("seed", int),
    ]:
        parser.add_argument(f"--{name}", type=kind, default=None, help="tuning override")
    for name, kind in [("base-channels", int), ("depth", int), ("norm", str), ("upsample", str)]:
        parser.add_argument(f"--{name}", type=kind, default=None, help="architecture override")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.data / "images").is_dir():
        raise SystemExit(f"ISBI data not found at {args.data}")

    overrides = {
        k: v
        for k in ("lr", "batch_size", "loss", "patch_size", "weight_decay", "warmup", "seed")
        if (v := getattr(args, k)) is not None
    }
    arch = {
        k: v
        for k in ("base_channels", "depth", "norm", "upsample")
        if (v := getattr(args, k)) is not None
    }
    train_ds = make_dataset(*isbi_paths(args.data, TRAIN), args.elastic)
    torch.manual_seed(0)
    model = UNet(in_channels=1, num_classes=2, **arch)
    start = time.perf_counter()
    budget = {"epochs": args.epochs} if args.epochs else {"max_time": args.max_time}
    history = fit(model, train_ds, progress=False, **budget, **overrides)
    wall = time.perf_counter() - start
    result = score(model, *isbi_paths(args.data, TEST), tta=False)
    with_tta = score(model, *isbi_paths(args.data, TEST), tta=True)
    float32 = score(model, *isbi_paths(args.data, TEST), tta=False, amp="off")
    images = sum(r["images_per_s"] * r["seconds"] for r in history.epochs)
    report = {
        **result,
        "tta": with_tta,
        "float32_segment": float32,
        "steps": history.steps,
        "images_per_s": images / max(history.seconds, 1e-9),
        "wall_s": wall,
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "arch": model.config.architecture(),
        "overrides": overrides,
        "dataset": type(train_ds).__name__,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
