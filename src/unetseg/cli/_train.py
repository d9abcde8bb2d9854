"""``unetseg train``: a folder of images and masks in, a saved model out."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from .._utils import check_device
from ..checkpoint import CHECKPOINT_NAMES
from ..config import UNetConfig
from ..data import SegmentationDataset
from ..model import UNet
from ..train import DEFAULT_BATCH_SIZE, DEFAULT_LR, DEFAULT_MAX_TIME, DEFAULT_PATCH_SIZE, fit
from ._common import (
    EXIT_OK,
    CommandError,
    fraction,
    names,
    non_negative_int,
    out_folder,
    positive_float,
    positive_int,
)

__all__ = ["HELP", "add_arguments", "run"]

HELP = f"""\
Masks may be 0/255 or 0/1 binary, class indices, a few grey levels, palette PNGs or RGB
colours; the encoding is found from the data and saved with the model, so 'segment' writes
masks the same way. With neither --epochs nor --max-time, training runs for {DEFAULT_MAX_TIME:.0f} s.

examples:
  unetseg train images/ masks/ --out model --max-time 300
  unetseg train images/ masks/ --out model --epochs 50 --checkpoint-dir ckpt --plot curve.png
  unetseg train images/ masks/ --out model --checkpoint-dir ckpt --resume   # after Ctrl-C
  unetseg train images/ masks/ --out model --color-map '["#000000", "#ff0000", "#00ff00"]'"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` flags, and ``run`` as the handler."""
    p.set_defaults(handler=run)
    p.add_argument("images", metavar="IMAGES", help="folder of images")
    p.add_argument("masks", metavar="MASKS", help="folder of masks (x.png or x_mask.png for x.jpg)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to save the model to")
    arg = p.add_argument_group("how long (whichever limit comes first stops training)").add_argument
    arg("--epochs", type=positive_int, metavar="N", help="passes over the data")
    arg("--max-time", type=positive_float, metavar="S", help="wall-clock budget in seconds")
    arg = p.add_argument_group("recipe").add_argument
    arg(
        "--val-fraction",
        type=fraction,
        default=0.2,
        metavar="F",
        help="share of images held out to score each epoch (the best epoch is kept; 0: none)",
    )
    arg(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="patches per optimizer step",
    )
    arg("--lr", type=positive_float, default=DEFAULT_LR, help="peak learning rate")
    arg(
        "--patch-size",
        type=positive_int,
        default=DEFAULT_PATCH_SIZE,
        metavar="N",
        help="side of the random training crops",
    )
    arg(
        "--loss",
        choices=("dice_ce", "ce", "dice"),
        default="dice_ce",
        help="soft Dice + cross-entropy, cross-entropy or Dice",
    )
    arg(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seeds the split, sampling and augmentation",
    )
    arg = p.add_argument_group("model").add_argument
    arg(
        "--base-channels",
        type=positive_int,
        default=UNetConfig.base_channels,
        metavar="N",
        help="width of the first level, doubled at each level down",
    )
    arg(
        "--depth",
        type=non_negative_int,
        default=UNetConfig.depth,
        metavar="N",
        help="number of 2x downsamplings",
    )
    arg = p.add_argument_group("data").add_argument
    arg(
        "--in-channels",
        type=positive_int,
        metavar="C",
        help="channels the model takes (default: from the images: 1 grey, 3 colour, N bands)",
    )
    arg("--ignore-index", type=int, metavar="V", help="mask value marking pixels to skip, e.g. 255")
    arg(
        "--class-names",
        type=names,
        metavar="A,B,...",
        help="one name per class; also fixes the number of classes",
    )
    arg(
        "--color-map",
        metavar="JSON",
        help='RGB masks: colours in class order \'["#000000", "#ff0000"]\' or {"#rrggbb": '
        "class}, inline or a .json file (default: the masks' colours in sorted order)",
    )
    arg = p.add_argument_group("running").add_argument
    arg("--checkpoint-dir", metavar="DIR", help="write a checkpoint here every epoch")
    arg("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    arg("--device", help="cuda, cuda:1, mps, cpu... (default: the best available)")
    arg("--amp", choices=("auto", "fp16", "bf16", "off"), default="auto", help="mixed precision")
    arg("--workers", type=non_negative_int, default=0, metavar="N", help="data-loading processes")
    arg("--no-progress", action="store_true", help="no progress bars")
    arg("--plot", metavar="PNG", help="save the training curves here (needs matplotlib)")


def read_color_map(text: str) -> Any:
    """``--color-map``: inline JSON, or the path of a JSON file.

    Raises:
        CommandError: neither a file nor valid JSON.
    """
    source = "--color-map"
    path = Path(text).expanduser()
    if not text.lstrip().startswith(("[", "{")):
        if not path.is_file():
            raise CommandError(f"--color-map {text}: no such file, and not inline JSON")
        source, text = str(path), path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CommandError(
            f'{source}: not valid JSON ({err}); e.g. \'["#000000", "#ff0000"]\''
        ) from None


def run(args: argparse.Namespace) -> int:
    """Train, save the model, print a summary."""
    out = out_folder(args.out)
    # Fail now rather than after hours of training.
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CommandError('--plot needs matplotlib: pip install "unetseg[plot]"')
    if args.device:
        check_device(args.device, CommandError)
    color_map = read_color_map(args.color_map) if args.color_map else None
    dataset = SegmentationDataset(
        args.images,
        args.masks,
        ignore_index=args.ignore_index,
        class_names=args.class_names,
        color_map=color_map,
        in_channels=args.in_channels,
        progress=not args.no_progress,
    )
    model = UNet(
        dataset.in_channels,
        dataset.num_classes,
        base_channels=args.base_channels,
        depth=args.depth,
    )
    try:
        history = fit(
            model,
            dataset,
            args.val_fraction or None,
            epochs=args.epochs,
            max_time=args.max_time,
            batch_size=args.batch_size,
            lr=args.lr,
            loss=args.loss,
            patch_size=args.patch_size,
            seed=args.seed,
            checkpoint_dir=args.checkpoint_dir,
            resume=args.resume,
            device=args.device,
            amp=args.amp,
            num_workers=args.workers,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        # A Ctrl-C before the loop starts (data split, device setup) saves nothing.
        folder = Path(args.checkpoint_dir or "")
        if args.checkpoint_dir and any(
            (folder / f"{name}.safetensors").is_file() for name in CHECKPOINT_NAMES
        ):
            print(
                f"checkpoint saved in {args.checkpoint_dir}; add --resume to the same "
                "command to continue",
                file=sys.stderr,
            )
        raise
    folder = model.save_pretrained(out)
    stopped = {"epochs": "all epochs done", "max_time": "time budget reached"}
    print(
        f"trained {len(history)} epoch(s), {history.steps} steps in {history.seconds:.1f} s "
        f"({stopped.get(history.stop_reason or '', history.stop_reason)})"
    )
    if history.best_mean_iou is not None:
        print(f"validation mean IoU {history.best_mean_iou:.4f} (epoch {history.best_epoch})")
    elif args.val_fraction:
        print("validation mean IoU: n/a")
    print(f"saved model to {folder}")
    if args.plot:
        print(f"saved training curves to {history.plot(args.plot)}")
    return EXIT_OK
