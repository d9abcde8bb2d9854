"""Benchmark the default fit() recipe on ISBI 2012 membranes (issue 4's target).

Train on slices 00-24 for ``--max-time`` seconds with every default, score mean IoU of the
two classes and pixel accuracy on full 512x512 slices 25-29::

    PYTHONPATH=src python benchmarks/bench_train.py              # the target: 300 s, defaults
    PYTHONPATH=src python benchmarks/bench_train.py --max-time 90 --lr 1e-3 --loss ce

Once ``unetseg.SegmentationDataset`` exists this runs exactly
``fit(UNet(in_channels=1, num_classes=2), SegmentationDataset(images, masks), max_time=300)``.
Until then a stand-in dataset and patch sampler below mimic the CONTRACTS.md interface.
Recipe overrides (``--lr`` ...) exist for tuning only; the target uses none of them.
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


def load_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stopgap loader: grey image scaled to [0, 1]; 0/255 mask -> classes 0/1."""
    image = np.asarray(Image.open(image_path).convert("L"), dtype=np.float32) / 255.0
    mask = (np.asarray(Image.open(mask_path)) > 127).astype(np.int64)
    return image, mask


class StandInAugment:
    """Stopgap for augment.Augment: random crop with foreground oversampling, flips, rot90."""

    def __init__(self, patch_size: int = 256, foreground_prob: float = 0.33) -> None:
        self.patch_size = patch_size
        self.foreground_prob = foreground_prob

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator):
        p = self.patch_size
        h, w = mask.shape
        if rng.random() < self.foreground_prob:  # centre on a pixel of a random class
            cls = rng.integers(0, int(mask.max()) + 1)
            ys, xs = torch.nonzero(mask == cls, as_tuple=True)
            k = rng.integers(0, len(ys))
            y0 = int(np.clip(int(ys[k]) - p // 2, 0, h - p))
            x0 = int(np.clip(int(xs[k]) - p // 2, 0, w - p))
        else:
            y0, x0 = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        image, mask = image[:, y0 : y0 + p, x0 : x0 + p], mask[y0 : y0 + p, x0 : x0 + p]
        if rng.random() < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        if rng.random() < 0.5:
            image, mask = image.flip(-2), mask.flip(-2)
        k = int(rng.integers(0, 4))
        return image.rot90(k, (-2, -1)).contiguous(), mask.rot90(k, (-2, -1)).contiguous()


class StandInDataset(torch.utils.data.Dataset):
    """Stopgap for SegmentationDataset: the CONTRACTS.md surface fit() uses, nothing more."""

    def __init__(self, images, masks, *, augment=None, _stats=None) -> None:
        pairs = [load_pair(i, m) for i, m in zip(images, masks, strict=True)]
        self._images, self._masks = [p[0] for p in pairs], [p[1] for p in pairs]
        self.paths = list(zip(images, masks, strict=True))
        stack = np.stack(self._images)
        self.mean, self.std = _stats or (float(stack.mean()), float(stack.std()))
        self.augment = augment
        self.ignore_index = None

    def with_augment(self, augment) -> StandInDataset:
        view = object.__new__(StandInDataset)
        view.__dict__.update(self.__dict__)
        view.augment = augment
        return view

    def config_fields(self) -> dict[str, Any]:
        return {
            "in_channels": 1,
            "num_classes": 2,
            "class_names": ("membrane", "cell"),
            "mask_encoding": "binary",
            "mask_values": (0, 255),
            "image_mean": (self.mean,),
            "image_std": (self.std,),
        }

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = torch.from_numpy((self._images[index] - self.mean) / self.std)[None]
        mask = torch.from_numpy(self._masks[index])
        if self.augment:
            rng = np.random.default_rng(seed)
            image, mask = self.augment(image, mask, rng)
        return image, mask


def make_dataset(images: list[Path], masks: list[Path]) -> Any:
    if hasattr(unetseg, "SegmentationDataset"):
        return unetseg.SegmentationDataset(images, masks)
    import unetseg.train as train_module

    train_module._default_augment = StandInAugment  # type: ignore[assignment]
    return StandInDataset(images, masks)


@torch.no_grad()
def score(model: UNet, images: list[Path], masks: list[Path]) -> dict[str, float]:
    """Full-slice predictions (eval, argmax), one confusion matrix over the test slices."""
    model.eval()
    cfg = model.config
    confusion = torch.zeros(2, 2, dtype=torch.int64)
    for image_path, mask_path in zip(images, masks, strict=True):
        image, mask = load_pair(image_path, mask_path)
        if hasattr(unetseg, "segment"):
            pred = torch.as_tensor(np.asarray(unetseg.segment(model, image_path)))
            pred = pred if pred.max() <= 1 else (pred > 127).long()
        else:
            mean, std = (cfg.image_mean or (0.0,))[0], (cfg.image_std or (1.0,))[0]
            x = torch.from_numpy((image - mean) / std)[None, None]
            pred = model(x).argmax(1)[0]
        confusion += confusion_matrix(pred, torch.from_numpy(mask), 2)
    s = scores_from_confusion(confusion)
    return {
        "mean_iou": s.mean_iou,
        "pixel_accuracy": s.pixel_accuracy,
        "iou_membrane": s.iou[0],
        "iou_cell": s.iou[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument(
        "--epochs", type=int, default=None, help="tuning: fixed epochs, no time limit"
    )
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
    train_ds = make_dataset(*isbi_paths(args.data, TRAIN))
    torch.manual_seed(0)
    model = UNet(in_channels=1, num_classes=2, **arch)
    start = time.perf_counter()
    budget = {"epochs": args.epochs} if args.epochs else {"max_time": args.max_time}
    history = fit(model, train_ds, progress=False, **budget, **overrides)
    wall = time.perf_counter() - start
    result = score(model, *isbi_paths(args.data, TEST))
    images = sum(r["images_per_s"] * r["seconds"] for r in history.epochs)
    report = {
        **result,
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
