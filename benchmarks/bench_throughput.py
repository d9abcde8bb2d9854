"""Training throughput of the default model: bare step vs fit(), and GFLOP/s vs the CPU's peak.

Measures, in one run on this machine:

1. the matmul peak: GFLOP/s of a large torch.mm in float32 (sgemm) and in bfloat16 (what
   the default recipe's autocast uses on CPUs with AMX / AVX512-BF16);
2. the bare training step of ``UNet(in_channels=1, num_classes=2)`` exactly as ``fit()``
   runs it (batch 4 of 256x256 patches, channels_last, the same autocast, Dice+CE, AdamW,
   gradient clipping) on tensors already in memory: images/s and achieved GFLOP/s (FLOPs
   counted by torch.utils.flop_counter for forward + backward);
3. ``fit()`` itself (SegmentationDataset, default augmentation, data loading included) for
   a fixed number of epochs: images/s, on ../shared/data/isbi2012-membrane and on a
   generated set of 400 RGB 360x480 images with 11 classes.

    PYTHONPATH=src python benchmarks/bench_throughput.py [--steps 30] [--epochs 12]

Prints one JSON object. Goals (issues 3 and 7): fit/bare >= 0.9; step GFLOP/s / peak >= 0.75.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from unetseg import SegmentationDataset, UNet, fit
from unetseg._train_setup import amp_dtype
from unetseg.losses import make_loss

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"
BATCH, PATCH = 4, 256


def matmul_peak(dtype: torch.dtype, size: int = 4096, repeats: int = 10) -> float:
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    seconds = time.perf_counter() - start
    return 2 * size**3 * repeats / seconds / 1e9


def bare_step(steps: int, in_channels: int = 1, num_classes: int = 2) -> tuple[float, float, str]:
    """(images/s, GFLOP/s, autocast dtype) of fit()'s step on in-memory tensors."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    dtype = amp_dtype("auto", device)
    model = UNet(in_channels=in_channels, num_classes=num_classes)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = make_loss("dice_ce")
    images = torch.randn(BATCH, in_channels, PATCH, PATCH).to(memory_format=torch.channels_last)
    masks = torch.randint(0, num_classes, (BATCH, PATCH, PATCH))

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return BATCH * steps / seconds, flops * steps / seconds / 1e9, str(dtype or torch.float32)


def fit_images_per_second(data: SegmentationDataset, epochs: int) -> float:
    torch.manual_seed(0)
    model = UNet(in_channels=data.in_channels, num_classes=data.num_classes)
    history = fit(model, data, epochs=epochs, progress=False)
    images = sum(e["images_per_s"] * e["seconds"] for e in history.epochs)
    return images / sum(e["seconds"] for e in history.epochs)


def isbi() -> SegmentationDataset:
    names = [f"{i:02d}.png" for i in range(25)]
    return SegmentationDataset(
        [DATA / "images" / n for n in names], [DATA / "masks" / n for n in names]
    )


def synthetic_rgb(folder: Path, count: int = 400) -> SegmentationDataset:
    """400 RGB 360x480 images with 11-class index masks of random rectangles."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    for i in range(count):
        mask = np.zeros((360, 480), np.uint8)
        for cls in rng.integers(1, 11, size=12):
            top, left = rng.integers(0, 300), rng.integers(0, 420)
            mask[top : top + rng.integers(20, 120), left : left + rng.integers(20, 160)] = cls
        image = rng.integers(0, 60, (360, 480, 3), dtype=np.uint8) + (mask[..., None] * 18)
        Image.fromarray(image.astype(np.uint8)).save(folder / "images" / f"{i:03d}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i:03d}.png")
    return SegmentationDataset(folder / "images", folder / "masks")


def measure(name: str, data: SegmentationDataset, steps: int, epochs: int) -> dict[str, object]:
    step_ips, step_gflops, dtype = bare_step(steps, data.in_channels, data.num_classes)
    fit_ips = fit_images_per_second(data, epochs)
    return {
        "data": name,
        "model": f"UNet(in_channels={data.in_channels}, num_classes={data.num_classes})",
        "step_autocast": dtype,
        "bare_step_images_per_s": round(step_ips, 2),
        "bare_step_gflops": round(step_gflops, 1),
        "fit_images_per_s": round(fit_ips, 2),
        "fit_over_bare_step": round(fit_ips / step_ips, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=12, help="fit() epochs on ISBI")
    args = parser.parse_args()
    sgemm = matmul_peak(torch.float32)
    bf16 = matmul_peak(torch.bfloat16)
    runs = []
    if (DATA / "images").is_dir():
        runs.append(
            measure("isbi2012-membrane (25 x 512x512 grey)", isbi(), args.steps, args.epochs)
        )
    with tempfile.TemporaryDirectory() as tmp:
        runs.append(
            measure(
                "synthetic 400 x 360x480 RGB, 11 classes", synthetic_rgb(Path(tmp)), args.steps, 1
            )
        )
    for run in runs:
        run["step_fraction_of_sgemm_peak"] = round(float(run["bare_step_gflops"]) / sgemm, 3)  # type: ignore[arg-type]
        run["step_fraction_of_bf16_matmul_peak"] = round(float(run["bare_step_gflops"]) / bf16, 3)  # type: ignore[arg-type]
    print(
        json.dumps(
            {
                "sgemm_peak_gflops": round(sgemm, 1),
                "bf16_matmul_peak_gflops": round(bf16, 1),
                "runs": runs,
                "threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
