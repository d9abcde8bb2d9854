"""Train on your own folder of images and masks, then segment the validation images.

Usage::

    python examples/train_on_folder.py IMAGES MASKS [--out DIR] [--max-time S]

for example, from the repository root, on the ISBI 2012 membrane slices::

    python examples/train_on_folder.py ../shared/data/isbi2012-membrane/images \\
        ../shared/data/isbi2012-membrane/masks --out outputs/isbi --max-time 120

With no arguments it uses that ISBI folder when it is there. Images and masks are paired
by file stem (``07.png`` with ``07.png``, ``07_mask.png`` or ``07.tif``); masks may be in
any encoding ``SegmentationDataset`` reads (0/255, index, grey levels, palette, RGB).
20% of the pairs are held out for validation. It writes to ``--out`` (default
``outputs/train_on_folder``):

- ``checkpoints/last.safetensors``: resumable training state, written every epoch;
- ``model/``: the best weights (``model.safetensors``, ``config.json``, ``README.md``);
- ``training.png``: the training curves;
- ``predictions/<stem>.png`` (each validation image's mask, in the training masks' own
  encoding: 0/255 stays 0/255) and ``predictions/<stem>_overlay.png``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import unetseg

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"


def main(
    images: str | Path,
    masks: str | Path,
    out_dir: str | Path = "outputs/train_on_folder",
    *,
    max_time: float = 120.0,
    seed: int = 0,
) -> float | None:
    """Train, save, segment the validation images; return the best validation mIoU."""
    out = Path(out_dir)
    data = unetseg.SegmentationDataset(images, masks)  # checks and decodes everything once
    train, val = data.split(val_fraction=0.2, seed=seed)
    model = unetseg.UNet(in_channels=data.in_channels, num_classes=data.num_classes)
    history = unetseg.fit(
        model, train, val, max_time=max_time, seed=seed, checkpoint_dir=out / "checkpoints"
    )
    model_dir = model.save_pretrained(out / "model")
    history.plot(out / "training.png")

    val_images = [image for image, _ in val.paths if image is not None]
    for path, mask in zip(val_images, unetseg.segment(model, val_images), strict=True):
        unetseg.save_mask(out / "predictions" / f"{path.stem}.png", mask, model)
        unetseg.save_overlay(out / "predictions" / f"{path.stem}_overlay.png", path, mask, model)

    print(f"{history.steps} steps in {history.seconds:.0f} s, stopped by {history.stop_reason}")
    print(f"best validation mIoU {history.best_mean_iou:.4f} (epoch {history.best_epoch})")
    print(f"model: {model_dir}\ncurves: {out / 'training.png'}")
    print(f"predictions: {out / 'predictions'} ({len(val_images)} masks and overlays)")
    return history.best_mean_iou


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="?", type=Path, help="folder of images")
    parser.add_argument("masks", nargs="?", type=Path, help="folder of masks")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/train_on_folder"),
        help="folder for the outputs (default: outputs/train_on_folder)",
    )
    parser.add_argument(
        "--max-time", type=float, default=120.0, help="training seconds (default: 120)"
    )
    args = parser.parse_args(argv)
    if args.images is None or args.masks is None:
        if args.images is not None or not (ISBI / "images").is_dir():
            parser.error(
                "give IMAGES and MASKS folders, e.g. python examples/train_on_folder.py "
                "data/images data/masks (the ISBI 2012 default "
                f"{ISBI} is not here)"
            )
        args.images, args.masks = ISBI / "images", ISBI / "masks"
        print(f"no folders given: using the ISBI 2012 membrane slices in {ISBI}")
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(sys.argv[1:])
    main(args.images, args.masks, args.out, max_time=args.max_time)
