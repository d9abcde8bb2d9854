"""``unetseg segment``: images in, masks (and overlays) out in the training masks' encoding."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from .._utils import pick_device
from ..errors import InputError
from ..imaging import IMAGE_EXTENSIONS
from ..infer import segment_iter
from ..pairing import listing
from ..visualize import save_mask, save_overlay
from ._common import (
    EXIT_OK,
    MODEL_HELP,
    CommandError,
    add_inference_flags,
    load_model,
    out_folder,
)

__all__ = ["HELP", "add_arguments", "run"]

_INPUT_EXTENSIONS = (*IMAGE_EXTENSIONS, ".npy")

HELP = """\
Writes OUT/<name>.png per input in the training masks' own encoding (0/255 stays 0/255,
colour masks come back in their colours) and, with --overlay, OUT/<name>_overlay.png.

examples:
  unetseg segment model photo.jpg --out predictions
  unetseg segment model scans/ more/scan_7.tif --out predictions --overlay --tta
  unetseg segment org/unet-cells big_slide.tif --out predictions --tile-size 1024"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``segment`` flags, and ``run`` as the handler."""
    p.set_defaults(handler=run)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the masks")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    p.add_argument(
        "--bands", type=_bands, metavar="B[,B,B]",
        help="image channels the overlays show, 0-based: one (grey) or three (red, green, blue), "
        "e.g. 3,2,1 for Sentinel-2's true colour (default: the first three)",
    )  # fmt: skip
    add_inference_flags(p, tiles=True)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _bands(text: str) -> tuple[int, ...]:
    try:
        bands = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 0-based channel numbers separated by commas (3,2,1), got {text!r}"
        ) from None
    if len(bands) not in (1, 3) or min(bands) < 0:
        raise argparse.ArgumentTypeError(
            f"expected one or three channel numbers >= 0 (grey, or red,green,blue), got {text!r}"
        )
    return bands


def _renumber(message: str) -> str:
    """``images[i]`` (from 0) in a ``segment_iter()`` message -> ``input i+1``."""
    return re.sub(r"^images\[(\d+)\]", lambda m: f"input {int(m[1]) + 1}", message)


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
    # Names compare without case: on Windows and macOS X.png and x.png are one file.
    owners: dict[str, list[Path]] = {}
    for path in files:
        owners.setdefault(f"{path.stem}.png".casefold(), []).append(path)
        if overlay:
            owners.setdefault(f"{path.stem}_overlay.png".casefold(), []).append(path)
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


def _check_inputs_survive(files: Sequence[Path], out: Path) -> None:
    """Refuse an --out folder where a mask would replace its own input (x.png in x.png's folder).

    An overlay could only land on an input named y_overlay.png, whose own mask has that
    name too: ``_check_unique_names`` refuses that already.
    """
    # Without case, as Windows and macOS compare names: there x.png replaces x.PNG.
    inputs = {str(path.resolve()).casefold() for path in files}
    victims = sorted(
        str(path)
        for path in files
        if str((out / f"{path.stem}.png").resolve()).casefold() in inputs
    )
    if victims:
        raise CommandError(
            f"--out {out} would overwrite input image(s) with masks: {listing(victims)}; "
            "write the masks to another folder"
        )


def run(args: argparse.Namespace) -> int:
    """Segment every input, write its mask (and overlay), print a summary."""
    files = _expand_inputs(args.inputs)
    _check_unique_names(files, args.overlay)
    out = out_folder(args.out)
    _check_inputs_survive(files, out)
    model = load_model(args.model, pick_device(args.device, error=CommandError))
    out.mkdir(parents=True, exist_ok=True)
    # One stream: each mask is written as soon as its batch is done, and the masks of the
    # inputs before an unreadable one are on disk when the command stops on it.
    masks = segment_iter(  # reads .npy files as well as images, as save_overlay() does
        model,
        files,
        tile_size=args.tile_size,
        tta=args.tta,
        amp=args.amp,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    try:
        for path, mask in zip(files, masks, strict=True):
            save_mask(out / f"{path.stem}.png", mask, model)
            if args.overlay:
                save_overlay(out / f"{path.stem}_overlay.png", path, mask, model, bands=args.bands)
    except InputError as err:  # segment_iter() numbers inputs from 0
        raise InputError(_renumber(str(err))) from None
    finally:
        masks.close()
    extra = " and overlays" if args.overlay else ""
    print(f"wrote {len(files)} mask(s){extra} to {out}")
    return EXIT_OK
