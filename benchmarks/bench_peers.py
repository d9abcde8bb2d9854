"""Train a peer library's U-Net on ISBI 2012 membranes with the seed recipe, and score it.

The seed recipe (the tutorial this project grew from, as the peers' own examples use it):
Adam 1e-3, cross-entropy, random 256x256 crops with flips, batch 4, for a wall-clock budget.
Scoring is the project's: train on slices 00-24, predict full 512x512 slices 25-29, mean IoU of
the two classes and pixel accuracy.

Peers need packages that do not belong in unetseg's environment (segmentation_models_pytorch
needs torchvision, which on this machine imports only with torch 2.14.1). Run this script with
a separate benchmark venv:

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 segmentation-models-pytorch monai pillow
    /tmp/bench-venv/bin/python benchmarks/bench_peers.py --peer smp --max-time 300

``pytorch-unet`` is milesial/Pytorch-UNet's architecture (bilinear upsampling, widths
64..1024 with the bottom halved), rebuilt here from its published layer list since it is
not a pip package. ``benchmarks/time_to_accuracy.py`` runs every contender side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"


def load_split(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images in [0, 1] and 0/1 masks: slices 00-24 for training, 25-29 for testing."""
    names = sorted(p.name for p in (data / "images").glob("*.png"))
    images = np.stack(
        [np.asarray(Image.open(data / "images" / n), np.float32) / 255 for n in names]
    )
    masks = np.stack(
        [(np.asarray(Image.open(data / "masks" / n)) > 127).astype(np.int64) for n in names]
    )
    return images[:25], masks[:25], images[25:], masks[25:]


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, mid: int | None = None):
        mid = mid or cout
        super().__init__(
            nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )  # fmt: skip


class PytorchUNetBilinear(nn.Module):
    """Pytorch-UNet's bilinear layout: 64-128-256-512-512 encoder, decoder halving widths."""

    def __init__(self, cin: int, classes: int):
        super().__init__()
        w = [64, 128, 256, 512, 512]
        self.inc = DoubleConv(cin, w[0])
        self.downs = nn.ModuleList(DoubleConv(w[i], w[i + 1]) for i in range(4))
        ups = [(1024, 256), (512, 128), (256, 64), (128, 64)]
        self.ups = nn.ModuleList(DoubleConv(a, b, a // 2) for a, b in ups)
        self.out = nn.Conv2d(64, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for up in self.ups:
            skip = skips.pop()
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
            y = F.pad(y, [0, skip.shape[3] - y.shape[3], 0, skip.shape[2] - y.shape[2]])
            y = up(torch.cat([skip, y], dim=1))
        return self.out(y)


def build(peer: str) -> nn.Module:
    if peer == "smp":
        import segmentation_models_pytorch as smp

        return smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=2)
    if peer == "monai":
        from monai.networks.nets import UNet

        return UNet(
            spatial_dims=2, in_channels=1, out_channels=2,
            channels=(64, 128, 256, 512, 1024), strides=(2, 2, 2, 2), num_res_units=2,
        )  # fmt: skip
    if peer == "pytorch-unet":
        return PytorchUNetBilinear(1, 2)
    raise SystemExit(f"unknown peer {peer!r}: choose smp, monai or pytorch-unet")


def train_seed_recipe(
    model: nn.Module, images: np.ndarray, masks: np.ndarray, max_time: float
) -> int:
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < max_time:
        batch_x, batch_y = [], []
        for _ in range(4):
            i = rng.integers(len(images))
            top, left = rng.integers(0, 512 - 256 + 1, size=2)
            x = images[i, top : top + 256, left : left + 256]
            y = masks[i, top : top + 256, left : left + 256]
            if rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            if rng.random() < 0.5:
                x, y = x[::-1], y[::-1]
            batch_x.append(x.copy())
            batch_y.append(y.copy())
        x_t = torch.from_numpy(np.stack(batch_x))[:, None]
        y_t = torch.from_numpy(np.stack(batch_y))
        loss = F.cross_entropy(model(x_t), y_t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    return steps


def score(model: nn.Module, images: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    model.eval()
    confusion = np.zeros((2, 2), np.int64)
    with torch.no_grad():
        for x, y in zip(images, masks, strict=True):
            pred = model(torch.from_numpy(x)[None, None]).argmax(1)[0].numpy()
            confusion += np.bincount(y.ravel() * 2 + pred.ravel(), minlength=4).reshape(2, 2)
    tp = np.diag(confusion)
    iou = tp / (confusion.sum(0) + confusion.sum(1) - tp)
    return float(iou.mean()), float(tp.sum() / confusion.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, choices=["smp", "monai", "pytorch-unet"])
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    torch.manual_seed(0)
    train_x, train_y, test_x, test_y = load_split(args.data)
    model = build(args.peer)
    start = time.perf_counter()
    steps = train_seed_recipe(model, train_x, train_y, args.max_time)
    seconds = time.perf_counter() - start
    miou, accuracy = score(model, test_x, test_y)
    result = {
        "contender": args.peer,
        "recipe": "seed: Adam 1e-3, CE, 256 crops + flips, batch 4",
        "train_seconds": round(seconds, 1),
        "optimizer_steps": steps,
        "test_miou": round(miou, 4),
        "pixel_accuracy": round(accuracy, 4),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
