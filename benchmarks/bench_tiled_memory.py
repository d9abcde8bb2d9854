"""Peak memory and time of segment() on one huge grayscale image (issue 5: <= 2.5 GiB).

Writes an 8192 x 8192 8-bit PNG (smooth pattern plus noise), then segments it in a fresh
subprocess with ``UNet(in_channels=1, num_classes=2, base_channels=16)`` and reports the
subprocess's peak RSS (the whole process, Python and torch included) and the wall-clock time
of the segment() call. The peak is the child's own ``VmHWM`` from /proc: ``ru_maxrss`` also
reports it, but after fork + exec it starts from the parent's peak, so it can only be higher.

    PYTHONPATH=src python benchmarks/bench_tiled_memory.py [--size 8192] [--base-channels 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time

    def hwm_mib():
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    import torch
    from unetseg import UNet
    from unetseg.infer import segment

    path, base, threads, tile, tta = sys.argv[1:6]
    torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    model = UNet(in_channels=1, num_classes=2, base_channels=int(base))
    before = hwm_mib()
    start = time.perf_counter()
    mask = segment(model, path, tile_size=int(tile) or None, tta=tta == "1", progress=False)
    seconds = time.perf_counter() - start
    peak = hwm_mib()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "shape": list(mask.shape), "dtype": str(mask.dtype), "seconds": seconds,
        "peak_rss_mib": peak, "rss_before_mib": before, "ru_maxrss_mib": maxrss,
        "class_fractions": [float((mask == k).mean()) for k in range(2)],
    }))
    """
)


def make_image(path: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 8 * np.pi, size, dtype=np.float32)
    image = np.empty((size, size), dtype=np.uint8)
    for top in range(0, size, 1024):  # in row blocks, to keep this process small
        rows = slice(top, top + 1024)
        waves = (np.sin(ramp[rows])[:, None] * np.cos(ramp)[None, :] + 1) * 100  # checkerboard
        image[rows] = waves + rng.integers(0, 55, waves.shape)
    Image.fromarray(image).save(path, compress_level=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile-size", type=int, default=0, help="0: automatic")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--limit-gib", type=float, default=2.5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"big_{args.size}.png"
        make_image(path, args.size)
        command = [
            sys.executable,
            "-c",
            CHILD,
            str(path),
            str(args.base_channels),
            str(args.threads),
            str(args.tile_size),
            "1" if args.tta else "0",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"child failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    peak_gib = result["peak_rss_mib"] / 1024
    print(
        f"{args.size}x{args.size} grey, UNet(1, 2, base_channels={args.base_channels}), "
        f"{args.threads} threads, tta={args.tta}"
    )
    print(f"  segment() time:   {result['seconds']:.1f} s")
    print(f"  peak RSS:         {peak_gib:.2f} GiB (limit {args.limit_gib} GiB)")
    print(f"  RSS before call:  {result['rss_before_mib'] / 1024:.2f} GiB")
    print(
        f"  ru_maxrss:        {result['ru_maxrss_mib'] / 1024:.2f} GiB (includes the parent's peak)"
    )
    print(f"  output:           {result['shape']} {result['dtype']}")
    print(f"  verdict:          {'OK' if peak_gib <= args.limit_gib else 'OVER LIMIT'}")


if __name__ == "__main__":
    main()
