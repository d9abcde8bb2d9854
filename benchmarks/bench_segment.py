"""segment() throughput against the bare model forward (issue 5: >= 0.9x images/s).

Writes ``--images`` 512 x 512 grey PNGs, then alternates, ``--repeats`` times:

* bare: ``model(x)`` on ready-made (B, 1, 512, 512) tensors, under ``torch.inference_mode``,
  in the channels_last layout ``segment()`` uses and the autocast its default ``amp="auto"``
  picks (bf16 on AMX CPUs);
* segment: ``segment(model, paths, batch_size=B)`` on the list of paths, which also decodes
  the PNGs, preprocesses, argmaxes and converts to uint8;
* segment float32: the same with ``amp="off"``, to show what the autocast buys.

B is the batch segment() itself picks (``batch_size`` capped by ``max_memory``), so both run
the same passes. The best run of each is reported (least disturbed by other processes).

    PYTHONPATH=src python benchmarks/bench_segment.py [--images 12] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetseg import UNet
from unetseg._utils import autocast_dtype
from unetseg.infer import DEFAULT_MAX_MEMORY, estimate_memory, segment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet(in_channels=1, num_classes=2).eval()
    size = args.size
    batch = max(
        1,
        min(args.batch_size, DEFAULT_MAX_MEMORY // estimate_memory(model.config, size, size)),
    )
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.images):
            path = Path(tmp) / f"img_{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
            paths.append(path)
        tensors = [
            torch.rand(min(batch, args.images - i), 1, size, size).contiguous(
                memory_format=torch.channels_last
            )
            for i in range(0, args.images, batch)
        ]

        dtype = autocast_dtype("auto", torch.device("cpu"))

        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

        def bare() -> None:
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype=dtype or torch.float32, enabled=bool(dtype)),
            ):
                for x in tensors:
                    model(x)

        def seg(amp: str = "auto") -> None:
            masks = segment(model, paths, batch_size=args.batch_size, amp=amp)
            assert len(masks) == args.images and masks[0].dtype == np.uint8

        bare()  # warm-up: allocator, kernels
        times: dict[str, list[float]] = {"bare": [], "segment": [], "float32": []}
        runs = (("bare", bare), ("segment", seg), ("float32", lambda: seg("off")))
        for _ in range(args.repeats):
            for name, fn in runs:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)

    bare_ips = args.images / min(times["bare"])
    seg_ips = args.images / min(times["segment"])
    f32_ips = args.images / min(times["float32"])
    print(
        f"UNet(1, 2) default width, {args.images} images {size}x{size}, batch {batch}, "
        f"{args.threads} threads, best of {args.repeats}, autocast {dtype or 'off'}"
    )
    print(f"  bare forward:       {bare_ips:7.3f} images/s   (runs: {_fmt(times['bare'])})")
    print(f"  segment(paths):     {seg_ips:7.3f} images/s   (runs: {_fmt(times['segment'])})")
    print(f"  ratio:              {seg_ips / bare_ips:7.3f}   (target >= 0.9)")
    print(f"  segment(amp='off'): {f32_ips:7.3f} images/s   (runs: {_fmt(times['float32'])})")
    print(f"  autocast speed-up:  {seg_ips / f32_ips:7.3f}")


def _fmt(runs: list[float]) -> str:
    return ", ".join(f"{t:.2f}s" for t in runs)


if __name__ == "__main__":
    main()
