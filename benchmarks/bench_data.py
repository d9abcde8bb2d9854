"""How fast SegmentationDataset serves augmented training items.

Prints items/s of ``ds[(i, seed)]`` with the default ``Augment(patch_size=256)`` on

* the ISBI 2012 membrane slices in ../shared/data/isbi2012-membrane (skipped if absent),
* a synthetic set of 400 RGB 360x480 images with 4-class colour masks, written to a
  temporary folder,

plus the construction time (header scan, decoding, mask analysis, statistics).
Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_data.py [--items 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetseg import Augment, SegmentationDataset

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"
COLOURS = np.array([(0, 0, 0), (200, 30, 30), (30, 200, 30), (30, 30, 200)], dtype=np.uint8)


def synthetic(folder: Path, count: int = 400, size: tuple[int, int] = (360, 480)) -> None:
    """Smooth random RGB images and colour masks of 4 classes (blobs), saved as PNG."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows, cols = np.mgrid[0 : size[0], 0 : size[1]]
    for i in range(count):
        labels = np.zeros(size, dtype=np.int64)
        for cls in (1, 2, 3):
            cy, cx = rng.integers(0, size[0]), rng.integers(0, size[1])
            radius = rng.integers(20, 90)
            labels[(rows - cy) ** 2 + (cols - cx) ** 2 < radius**2] = cls
        noise = rng.integers(0, 40, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
        texture = np.kron(noise, np.ones((8, 8, 1), dtype=np.uint8))
        image = (COLOURS[labels] // 2 + texture + 40).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{i:03d}.png", compress_level=1)
        Image.fromarray(COLOURS[labels]).save(folder / "masks" / f"{i:03d}.png", compress_level=1)


def measure(name: str, images: Path, masks: Path, items: int) -> None:
    start = time.perf_counter()
    ds = SegmentationDataset(images, masks)
    built = time.perf_counter() - start
    train = ds.with_augment(Augment(patch_size=256))
    train[(0, 0)]  # warm-up
    start = time.perf_counter()
    for step in range(items):
        train[(step % len(train), step)]
    elapsed = time.perf_counter() - start
    image, mask = train[(0, 0)]
    print(
        f"{name:<28} {len(ds):>4} samples  construct {built:6.2f} s  "
        f"{items / elapsed:8.1f} items/s  ({1000 * elapsed / items:.2f} ms/item; "
        f"item {tuple(image.shape)} / {tuple(mask.shape)}, {ds.config_fields()['mask_encoding']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=500, help="items to draw per data set")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}; wall-clock figures, noisy on shared machines")
    if (ISBI / "images").is_dir():
        measure("isbi2012-membrane 512x512 L", ISBI / "images", ISBI / "masks", args.items)
    else:
        print(f"isbi2012-membrane: skipped, not found at {ISBI}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthetic(Path(tmp))
        print(f"(synthetic set written in {time.perf_counter() - start:.1f} s)")
        measure("synthetic 400 RGB 360x480", Path(tmp) / "images", Path(tmp) / "masks", args.items)


if __name__ == "__main__":
    main()
