"""How fast SegmentationDataset serves augmented training items.

Prints items/s of ``ds[(i, seed)]`` with the default ``Augment(patch_size=256)`` on

* the ISBI 2012 membrane slices in ../shared/data/isbi2012-membrane (skipped if absent),
* a synthetic set of 400 RGB 360x480 images with 4-class colour masks, written to a
  temporary folder,

plus the construction time (header scan, decoding, mask analysis, statistics), and
on request

* ``--large N``: N RGB JPEG images of 2048x2048 with 12-colour PNG masks: construction
  (and how many mask reads it took), reading and mapping one colour mask, and items
  with the default 1 GiB cache and with none;
* ``--tiles N``: N 64x64 tiles of the same kind: construction, and the bytes a "spawn"
  DataLoader worker receives (the pickled data set).

Run from the repository root:

    PYTHONPATH=src python benchmarks/bench_data.py [--items 500] [--threads 1]
    PYTHONPATH=src python benchmarks/bench_data.py --items 0 --large 80 --tiles 10000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unetseg import Augment, SegmentationDataset, _store

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


def many_colours(folder: Path, count: int, side: int, seed: int) -> None:
    """RGB JPEG images with PNG masks of 12 colours (discs of 11 classes on black)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    colours[0] = 0
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows, cols = np.mgrid[0:side, 0:side]
    for i in range(count):
        labels = np.zeros((side, side), dtype=np.uint8)
        for cls in rng.choice(np.arange(1, 12), min(11, 3 + side // 200), replace=False):
            cy, cx = rng.integers(0, side, 2)
            radius = rng.integers(side // 50 + 2, side // 5 + 3)
            labels[(rows - cy) ** 2 + (cols - cx) ** 2 < radius**2] = cls
        image = colours[labels] // 2 + rng.integers(0, 60, (side, side, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{i:05d}.jpg", quality=90)
        Image.fromarray(colours[labels]).save(folder / "masks" / f"{i:05d}.png", compress_level=1)


def median_ms(calls: list[Any]) -> float:
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def measure_large(folder: Path, count: int) -> None:
    many_colours(folder, count, 2048, seed=0)
    reads = 0
    original = _store.read_mask

    def counting(path: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return original(path, **kwargs)

    _store.read_mask = counting  # type: ignore[assignment]
    start = time.perf_counter()
    ds = SegmentationDataset(folder / "images", folder / "masks", progress=False)
    built = time.perf_counter() - start
    _store.read_mask = original
    print(f"{count} RGB JPEG 2048x2048 + 12-colour PNG masks: construct {built:.1f} s, "
          f"{reads} mask reads; {ds.describe().splitlines()[-2].strip()}")  # fmt: skip
    store = ds._store
    per_mask = median_ms(
        [lambda i=i: store.codec.decode(store.decode_raw_mask(i), "m") for i in range(count)]
    )
    print(f"  colour mask read and mapped to classes: {per_mask:.1f} ms (median)")
    cold = SegmentationDataset(
        folder / "images", folder / "masks", cache_bytes=0, mean=ds.mean, std=ds.std,
        progress=False,
    )  # fmt: skip
    for label, data in (("1 GiB cache", ds), ("no cache", cold)):
        train = data.with_augment(Augment(patch_size=256))
        items = [lambda k=k, t=train: t[(k % count, k)] for k in range(2 * count)]
        print(f"  augmented 256x256 item, {label}: {median_ms(items):.2f} ms (median)")


def measure_tiles(folder: Path, count: int) -> None:
    many_colours(folder, count, 64, seed=1)
    start = time.perf_counter()
    ds = SegmentationDataset(folder / "images", folder / "masks", progress=False)
    built = time.perf_counter() - start
    sent = len(ForkingPickler.dumps(ds))
    print(f"{count} 64x64 tiles: construct {built:.1f} s; pickled for a spawn worker "
          f"{sent / 2**20:.1f} MiB ({sent / count:.0f} bytes a sample)")  # fmt: skip


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
    parser.add_argument("--large", type=int, default=0, help="2048x2048 colour-mask samples")
    parser.add_argument("--tiles", type=int, default=0, help="64x64 tiles for the pickle size")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}; wall-clock figures, noisy on shared machines")
    if args.items > 0:
        if (ISBI / "images").is_dir():
            measure("isbi2012-membrane 512x512 L", ISBI / "images", ISBI / "masks", args.items)
        else:
            print(f"isbi2012-membrane: skipped, not found at {ISBI}")
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            synthetic(Path(tmp))
            print(f"(synthetic set written in {time.perf_counter() - start:.1f} s)")
            folder = Path(tmp)
            measure("synthetic 400 RGB 360x480", folder / "images", folder / "masks", args.items)
    if args.large > 0:
        with tempfile.TemporaryDirectory() as tmp:
            measure_large(Path(tmp), args.large)
    if args.tiles > 0:
        with tempfile.TemporaryDirectory() as tmp:
            measure_tiles(Path(tmp), args.tiles)


if __name__ == "__main__":
    main()
