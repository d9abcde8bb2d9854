"""The ``unetseg`` command line (also ``python -m unetseg``): train, segment, evaluate, export.

Exit codes scripts can rely on:

* 0: success;
* 1: an error unetseg detected (missing folder, unreadable image, bad data...), printed as
  one ``error: <message>`` line on stderr, without a traceback;
* 2: a usage error (unknown flag, bad flag value), reported by argparse;
* 130: interrupted with Ctrl-C.

This module is the user interface, so it prints; the library itself only logs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from . import __version__
from ._utils import pick_device
from .config import UNetConfig
from .data import SegmentationDataset
from .errors import DatasetError, InputError, UnetsegError
from .export import DEFAULT_OPSET, export_onnx
from .imaging import IMAGE_EXTENSIONS, load_npy
from .infer import segment
from .masks import describe_key, pack_colors, read_mask
from .metrics import confusion_matrix, scores_from_confusion
from .model import UNet
from .pairing import listing, pair_files
from .train import DEFAULT_BATCH_SIZE, DEFAULT_LR, DEFAULT_MAX_TIME, DEFAULT_PATCH_SIZE, fit
from .visualize import save_mask, save_overlay

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_T = TypeVar("_T")
_INPUT_EXTENSIONS = (*IMAGE_EXTENSIONS, ".npy")

_MODEL_HELP = "a folder saved by 'unetseg train', or a Hugging Face Hub repo id"
_EXAMPLES = """\
examples:
  unetseg train data/images data/masks --out runs/cells --max-time 600
  unetseg segment runs/cells new_images/ --out predictions --overlay
  unetseg evaluate runs/cells test/images test/masks
  unetseg export runs/cells cells.onnx

Run 'unetseg COMMAND --help' for the flags of one command.
exit codes: 0 success, 1 error (one 'error: ...' line on stderr), 2 usage error,
130 interrupted."""

_TRAIN_HELP = f"""\
Masks may be 0/255 or 0/1 binary, class indices, a few grey levels, palette PNGs or RGB
colours; the encoding is found from the data and saved with the model, so 'segment' writes
masks the same way. With neither --epochs nor --max-time, training runs for {DEFAULT_MAX_TIME:.0f} s.

examples:
  unetseg train images/ masks/ --out model --max-time 300
  unetseg train images/ masks/ --out model --epochs 50 --checkpoint-dir ckpt --plot curve.png
  unetseg train images/ masks/ --out model --checkpoint-dir ckpt --resume   # after Ctrl-C
  unetseg train images/ masks/ --out model --color-map '["#000000", "#ff0000", "#00ff00"]'"""

_SEGMENT_HELP = """\
Writes OUT/<name>.png per input in the training masks' own encoding (0/255 stays 0/255,
colour masks come back in their colours) and, with --overlay, OUT/<name>_overlay.png.

examples:
  unetseg segment model photo.jpg --out predictions
  unetseg segment model scans/ more/scan_7.tif --out predictions --overlay --tta
  unetseg segment org/unet-cells big_slide.tif --out predictions --tile-size 1024"""

_EVALUATE_HELP = """\
Masks are decoded with the model's own mapping (its mask values or colours and
ignore_index), so a test set may lack a class. Images pair with masks by file stem.

examples:
  unetseg evaluate model test/images test/masks
  unetseg evaluate model test/images test/masks --json > scores.json"""

_EXPORT_HELP = """\
The graph takes 'image' (N, C, H, W) float32 of any height and width, normalised with the
config's image_mean/image_std, and returns 'logits' (N, K, H, W). The config is embedded as
the 'unetseg_config' metadata entry. Needs: pip install "unetseg[onnx]".

examples:
  unetseg export model model.onnx
  unetseg export org/unet-cells cells.onnx --opset 18"""


class CommandError(UnetsegError, ValueError):
    """A command-line argument that names something unusable (a file, a colour map)."""


# --------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (0: no validation), got {text}")
    return value


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",")]


# --------------------------------------------------------------------------- parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks and appends each flag's default, when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The ``unetseg`` argument parser, one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="unetseg",
        description="Semantic segmentation with a U-Net: train on a folder of images and "
        "masks in any encoding, segment images of any size, score, export.",
        epilog=_EXAMPLES,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"unetseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (INFO)")
    # SUPPRESS: a subcommand's default must not undo a -v given before the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details (INFO)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary, epilog, add in (
        ("train", "train a U-Net on a folder of images and masks", _TRAIN_HELP, _add_train),
        ("segment", "segment images, write masks (and overlays)", _SEGMENT_HELP, _add_segment),
        ("evaluate", "score a model on images with true masks", _EVALUATE_HELP, _add_evaluate),
        ("export", "export a model to ONNX", _EXPORT_HELP, _add_export),
    ):
        add(
            commands.add_parser(
                name,
                help=summary,
                description=summary[0].upper() + summary[1:] + ".",
                epilog=epilog,
                formatter_class=_Formatter,
                parents=[common],
            )
        )
    return parser


def _add_train(p: argparse.ArgumentParser) -> None:
    p.set_defaults(handler=_train)
    p.add_argument("images", metavar="IMAGES", help="folder of images")
    p.add_argument("masks", metavar="MASKS", help="folder of masks (x.png or x_mask.png for x.jpg)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to save the model to")
    arg = p.add_argument_group("how long (whichever limit comes first stops training)").add_argument
    arg("--epochs", type=_positive_int, metavar="N", help="passes over the data")
    arg("--max-time", type=_positive_float, metavar="S", help="wall-clock budget in seconds")
    arg = p.add_argument_group("recipe").add_argument
    arg(
        "--val-fraction",
        type=_fraction,
        default=0.2,
        metavar="F",
        help="share of images held out to score each epoch (the best epoch is kept; 0: none)",
    )
    arg("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE, metavar="N")
    arg("--lr", type=_positive_float, default=DEFAULT_LR, help="peak learning rate")
    arg(
        "--patch-size",
        type=_positive_int,
        default=DEFAULT_PATCH_SIZE,
        metavar="N",
        help="side of the random training crops",
    )
    arg("--loss", choices=("dice_ce", "ce", "dice"), default="dice_ce")
    arg(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seeds the split, sampling and augmentation",
    )
    arg = p.add_argument_group("model").add_argument
    arg(
        "--base-channels",
        type=_positive_int,
        default=UNetConfig.base_channels,
        metavar="N",
        help="width of the first level, doubled at each level down",
    )
    arg(
        "--depth",
        type=_non_negative_int,
        default=UNetConfig.depth,
        metavar="N",
        help="number of 2x downsamplings",
    )
    arg = p.add_argument_group("data").add_argument
    arg(
        "--in-channels",
        type=_positive_int,
        metavar="C",
        help="channels the model takes (default: from the images, 1 grey or 3 colour)",
    )
    arg("--ignore-index", type=int, metavar="V", help="mask value marking pixels to skip, e.g. 255")
    arg(
        "--class-names",
        type=_names,
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
    arg("--workers", type=_non_negative_int, default=0, metavar="N", help="data-loading processes")
    arg("--no-progress", action="store_true", help="no progress bars")
    arg("--plot", metavar="PNG", help="save the training curves here (needs matplotlib)")


def _add_common(p: argparse.ArgumentParser, *, tiles: bool) -> None:
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=4,
        metavar="N",
        help="images (or tiles) per forward pass",
    )
    if tiles:
        p.add_argument(
            "--tile-size",
            type=_positive_int,
            metavar="N",
            help="segment in overlapping N x N tiles (default: only images too big for memory)",
        )
    p.add_argument("--tta", action="store_true", help="average over flips (4x slower)")
    p.add_argument("--device", help="cuda, mps, cpu... (default: the best available)")


def _add_segment(p: argparse.ArgumentParser) -> None:
    p.set_defaults(handler=_segment)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the masks")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    _add_common(p, tiles=True)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.set_defaults(handler=_evaluate)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("images", metavar="IMAGES", help="folder of images")
    p.add_argument("masks", metavar="MASKS", help="folder of true masks, paired by file stem")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    _add_common(p, tiles=False)


def _add_export(p: argparse.ArgumentParser) -> None:
    p.set_defaults(handler=_export)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("output", metavar="OUT.onnx", help="the file to write")
    p.add_argument("--opset", type=_positive_int, default=DEFAULT_OPSET, metavar="N")


# --------------------------------------------------------------------------- helpers


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _image_input(path: Path) -> Path | np.ndarray:
    """What ``segment()`` takes for a file: the path, or the array of a ``.npy`` file."""
    return load_npy(path) if path.suffix.lower() == ".npy" else path


def _out_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"--out {folder} is a file; give a folder")
    return folder


def _device(name: str | None) -> torch.device:
    return pick_device(name)


def _load_model(name: str, device: torch.device) -> UNet:
    return UNet.from_pretrained(name, map_location=device)


def _renumber(message: str, offset: int) -> str:
    """``images[i]`` in a ``segment()`` message -> the position among all inputs."""
    return re.sub(r"^images\[(\d+)\]", lambda m: f"input {offset + int(m[1]) + 1}", message)


def _expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files as given; folders -> their image files, sorted, hidden files skipped."""
    files: list[Path] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in _INPUT_EXTENSIONS
            )
            if not found:
                raise CommandError(
                    f"folder {path} holds no image files (accepted: {', '.join(_INPUT_EXTENSIONS)})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"{path}: no such file or folder")
    return files


def _check_unique_names(files: Sequence[Path], overlay: bool) -> None:
    """Refuse inputs whose outputs would overwrite each other (x.png and x.jpg, a/x and b/x)."""
    owners: dict[str, list[Path]] = {}
    for path in files:
        owners.setdefault(f"{path.stem}.png", []).append(path)
        if overlay:
            owners.setdefault(f"{path.stem}_overlay.png", []).append(path)
    clashes = [
        f"{name} <- {' + '.join(map(str, paths))}"
        for name, paths in owners.items()
        if len(paths) > 1
    ]
    if clashes:
        raise CommandError(
            f"inputs would write the same output file: {listing(clashes)}; rename them or "
            "segment them into different --out folders"
        )


def _read_color_map(text: str) -> Any:
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


# --------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    out = _out_folder(args.out)
    # Fail now rather than after hours of training.
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CommandError('--plot needs matplotlib: pip install "unetseg[plot]"')
    color_map = _read_color_map(args.color_map) if args.color_map else None
    dataset = SegmentationDataset(
        args.images,
        args.masks,
        ignore_index=args.ignore_index,
        class_names=args.class_names,
        color_map=color_map,
        in_channels=args.in_channels,
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
        if args.checkpoint_dir:
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


# --------------------------------------------------------------------------- segment


def _segment(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    files = _expand_inputs(args.inputs)
    _check_unique_names(files, args.overlay)
    out = _out_folder(args.out)
    model = _load_model(args.model, _device(args.device))
    out.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(files), unit="image", disable=args.no_progress) as bar:
        for start in range(0, len(files), args.batch_size):
            chunk = files[start : start + args.batch_size]
            images = [_image_input(path) for path in chunk]
            try:
                masks = segment(
                    model,
                    images,
                    tile_size=args.tile_size,
                    tta=args.tta,
                    batch_size=args.batch_size,
                    progress=not args.no_progress,
                )
            except InputError as err:  # segment() numbers inputs within this chunk
                raise InputError(_renumber(str(err), start)) from None
            for path, image, mask in zip(chunk, images, masks, strict=True):
                save_mask(out / f"{path.stem}.png", mask, model)
                if args.overlay:
                    save_overlay(out / f"{path.stem}_overlay.png", image, mask, model)
            bar.update(len(chunk))
    extra = " and overlays" if args.overlay else ""
    print(f"wrote {len(files)} mask(s){extra} to {out}")
    return EXIT_OK


# --------------------------------------------------------------------------- evaluate


def _label_table(config: UNetConfig) -> tuple[np.ndarray, np.ndarray]:
    """Raw mask value (or packed colour) -> label, as the model's training data mapped them.

    Returns:
        (sorted keys, labels) int64 arrays; ``ignore_index`` maps to itself.
    """
    k = config.num_classes
    if config.mask_encoding == "color":
        if config.class_colors is None:
            raise CommandError("the model's config has mask_encoding 'color' but no class_colors")
        keys = [int(pack_colors(np.array(c, dtype=np.uint8))) for c in config.class_colors]
    else:  # binary / grey / index / palette: values (or palette indices) per class
        keys = list(config.mask_values) if config.mask_values is not None else list(range(k))
    labels = list(range(k))
    ignore = config.ignore_index
    if (
        ignore is not None
        and ignore >= 0
        and config.mask_encoding != "color"
        and ignore not in keys
    ):
        keys, labels = [*keys, ignore], [*labels, ignore]
    order = np.argsort(keys, kind="stable")
    return np.asarray(keys, dtype=np.int64)[order], np.asarray(labels, dtype=np.int64)[order]


def _read_labels(
    path: Path, config: UNetConfig, table: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """A ground-truth mask file -> (H, W) int64 labels, decoded with the model's mapping."""
    raw = read_mask(path)
    color_model = config.mask_encoding == "color"
    values = raw.array
    if color_model and raw.kind == "palette":  # e.g. masks written by 'unetseg segment'
        palette = np.zeros((256, 3), dtype=np.uint8)
        palette[: len(raw.palette or ())] = np.asarray(raw.palette or np.zeros((0, 3)))
        values = pack_colors(palette[values])
    elif color_model and raw.kind != "color":
        raise DatasetError(
            f"{path}: a single-channel mask, but the model was trained on RGB colour masks; "
            "give masks drawn in the training colours"
        )
    elif not color_model and raw.kind == "color":
        red, green, blue = (values >> 16) & 255, (values >> 8) & 255, values & 255
        if not (np.array_equal(red, green) and np.array_equal(green, blue)):
            raise DatasetError(
                f"{path}: an RGB colour mask, but the model was trained on "
                f"{config.mask_encoding or 'index'} masks; give single-channel masks"
            )
        values = blue
    keys, labels = table
    values = values.astype(np.int64)
    position = np.searchsorted(keys, values).clip(0, len(keys) - 1)
    known = keys[position] == values
    if not known.all():
        bad = np.unique(values[~known])[:8]
        shown = ", ".join(describe_key(int(v), color_model) for v in bad)
        expected = ", ".join(describe_key(int(v), color_model) for v in keys)
        raise DatasetError(
            f"{path}: mask value(s) {shown} are not among the model's classes (it knows "
            f"{expected}); give masks in the encoding the model was trained on"
        )
    out: np.ndarray = labels[position]
    return out


def _evaluate(args: argparse.Namespace) -> int:
    pairs = pair_files(args.images, args.masks)
    model = _load_model(args.model, _device(args.device))
    config = model.config
    k = config.num_classes
    table = _label_table(config)
    confusion = torch.zeros(k, k, dtype=torch.int64)
    for chunk in _chunks(pairs, args.batch_size):
        predictions = segment(
            model,
            [_image_input(image) for image, _ in chunk],
            tta=args.tta,
            batch_size=args.batch_size,
            progress=False,
        )
        for (image, mask), prediction in zip(chunk, predictions, strict=True):
            labels = _read_labels(mask, config, table)
            if labels.shape != prediction.shape:
                raise DatasetError(
                    f"{mask}: mask is {labels.shape[1]}x{labels.shape[0]} but image {image} is "
                    f"{prediction.shape[1]}x{prediction.shape[0]} (width x height)"
                )
            confusion += confusion_matrix(
                torch.from_numpy(prediction.astype(np.int64)),
                torch.from_numpy(labels),
                k,
                ignore_index=config.ignore_index,
            )
    scores = scores_from_confusion(confusion)
    names = config.class_names or tuple(f"class_{i}" for i in range(k))
    support = confusion.sum(dim=1).tolist()

    def number(value: float) -> float | None:  # JSON has no NaN
        return None if math.isnan(value) else value

    report = {
        "model": args.model,
        "images": len(pairs),
        "pixels": int(confusion.sum()),
        "mean_iou": number(scores.mean_iou),
        "mean_dice": number(scores.mean_dice),
        "pixel_accuracy": number(scores.pixel_accuracy),
        "classes": [
            {"index": i, "name": name, "iou": number(iou), "dice": number(dice), "pixels": n}
            for i, (name, iou, dice, n) in enumerate(
                zip(names, scores.iou, scores.dice, support, strict=True)
            )
        ],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK

    def cell(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.4f}"

    width = max(5, *(len(name) for name in names))
    print(f"{len(pairs)} image(s), {int(confusion.sum()):,} pixels scored")
    print(f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}  {'pixels':>12}")
    for name, iou, dice, n in zip(names, scores.iou, scores.dice, support, strict=True):
        print(f"{name:<{width}}  {cell(iou):>7}  {cell(dice):>7}  {n:>12,}")
    print(
        f"mean IoU {cell(scores.mean_iou)}   mean Dice {cell(scores.mean_dice)}   "
        f"pixel accuracy {cell(scores.pixel_accuracy)}"
    )
    return EXIT_OK


# --------------------------------------------------------------------------- export


def _export(args: argparse.Namespace) -> int:
    model = _load_model(args.model, torch.device("cpu"))
    path = export_onnx(model, args.output, opset=args.opset)
    print(f"wrote {path} (ONNX opset {args.opset})")
    return EXIT_OK


# --------------------------------------------------------------------------- main


def _check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command == "train" and args.resume and not args.checkpoint_dir:
        parser.error("train: --resume needs --checkpoint-dir, the folder to resume from")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments after the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit code: 0 success, 1 an error unetseg reported, 2 a usage error,
        130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_combinations(parser, args)
    except SystemExit as exit_:  # argparse: --help, --version (0) or a usage error (2)
        status = exit_.code
        return status if isinstance(status, int) else EXIT_OK if status is None else EXIT_USAGE

    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)
    logger = logging.getLogger("unetseg")
    previous = logger.level
    if args.verbose:
        logger.setLevel(logging.INFO)
    try:
        code: int = args.handler(args)
        return code
    except (UnetsegError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        logger.setLevel(previous)
