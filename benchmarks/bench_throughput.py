"""Training throughput of the default model: bare step vs fit(), and GFLOP/s vs the CPU's peak.

Measures, in one run on this machine:

1. the matmul peak: GFLOP/s of a large torch.mm in float32 (sgemm) and in bfloat16 (what
   the default recipe's autocast uses on CPUs with AMX / AVX512-BF16);
2. the bare training step of ``UNet(in_channels=1, num_classes=2)`` exactly as ``fit()``
   runs it (batch 4 of 256x256 patches, channels_last, the same autocast, Dice+CE, AdamW,
   gradient clipping) on tensors already in memory: images/s and achieved GFLOP/s (FLOPs
   counted by torch.utils.flop_counter for forward + backward);
3. ``fit()`` itself on ../shared/data/isbi2012-membrane (SegmentationDataset, default
   augmentation, data loading included) for a fixed number of epochs: images/s.

    PYTHONPATH=src python benchmarks/bench_throughput.py [--steps 30] [--epochs 2]

Prints one JSON object. Goals (issues 3 and 7): fit/bare >= 0.9; step GFLOP/s / peak >= 0.75.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
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


def bare_step(steps: int) -> tuple[float, float, str]:
    """(images/s, GFLOP/s, autocast dtype) of fit()'s step on in-memory tensors."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    dtype = amp_dtype("auto", device)
    model = UNet(in_channels=1, num_classes=2).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = make_loss("dice_ce")
    images = torch.randn(BATCH, 1, PATCH, PATCH).to(memory_format=torch.channels_last)
    masks = torch.randint(0, 2, (BATCH, PATCH, PATCH))

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


def fit_images_per_second(epochs: int) -> float:
    names = [f"{i:02d}.png" for i in range(25)]
    data = SegmentationDataset(
        [DATA / "images" / n for n in names], [DATA / "masks" / n for n in names]
    )
    torch.manual_seed(0)
    model = UNet(in_channels=1, num_classes=2)
    # Many short epochs: ISBI has 25 images, so repeat them to get steady-state epochs.
    history = fit(model, torch.utils.data.ConcatDataset([data] * 8), epochs=epochs, progress=False)
    images = sum(e["images_per_s"] * e["seconds"] for e in history.epochs)
    return images / sum(e["seconds"] for e in history.epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    sgemm = matmul_peak(torch.float32)
    bf16 = matmul_peak(torch.bfloat16)
    step_ips, step_gflops, dtype = bare_step(args.steps)
    fit_ips = fit_images_per_second(args.epochs) if (DATA / "images").is_dir() else float("nan")
    peak = bf16 if dtype == "torch.bfloat16" else sgemm
    print(
        json.dumps(
            {
                "sgemm_peak_gflops": round(sgemm, 1),
                "bf16_matmul_peak_gflops": round(bf16, 1),
                "step_autocast": dtype,
                "bare_step_images_per_s": round(step_ips, 2),
                "bare_step_gflops": round(step_gflops, 1),
                "step_fraction_of_sgemm_peak": round(step_gflops / sgemm, 3),
                "step_fraction_of_matching_peak": round(step_gflops / peak, 3),
                "fit_images_per_s": round(fit_ips, 2),
                "fit_over_bare_step": round(fit_ips / step_ips, 3),
                "threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
