"""What the subcommands share: exit codes, argument types, inference flags, model loading."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from ..errors import UnetsegError
from ..model import UNet

_N = TypeVar("_N", int, float)

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MODEL_HELP",
    "CommandError",
    "add_inference_flags",
    "fraction",
    "load_model",
    "names",
    "non_negative_int",
    "out_folder",
    "positive_float",
    "positive_int",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

MODEL_HELP = "a folder saved by 'unetseg train', or a Hugging Face Hub repo id"


class CommandError(UnetsegError, ValueError):
    """A command-line argument that names something unusable (a file, a colour map)."""


# --------------------------------------------------------------------------- argument types


def _number(
    text: str, parse: Callable[[str], _N], ok: Callable[[_N], bool], expected: str, note: str = ""
) -> _N:
    """Parse ``text`` with ``parse`` and check it with ``ok``, in argparse's error style."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {expected}{note}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0 and math.isfinite(v), "a positive finite number")


def fraction(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)", " (0: no validation)")


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",")]


# --------------------------------------------------------------------------- shared flags


def add_inference_flags(p: argparse.ArgumentParser, *, tiles: bool) -> None:
    """The flags of the commands that run a model on images (segment, evaluate)."""
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=4,
        metavar="N",
        help="images (or tiles) per forward pass",
    )
    if tiles:
        p.add_argument(
            "--tile-size",
            type=positive_int,
            metavar="N",
            help="segment in overlapping N x N tiles (default: only images too big for memory)",
        )
    p.add_argument(
        "--tta",
        action="store_true",
        help="average over the flips the model was trained with (2-4x slower)",
    )
    p.add_argument(
        "--amp",
        choices=("auto", "fp16", "bf16", "off"),
        default="auto",
        help="mixed precision: auto is bf16 on CPUs with AMX/AVX512-BF16, fp16 on CUDA; "
        "off for float32",
    )
    p.add_argument("--device", help="cuda, mps, cpu... (default: the best available)")


# --------------------------------------------------------------------------- helpers


def out_folder(path: str) -> Path:
    """``--out`` as a folder path (it may not exist yet).

    Raises:
        CommandError: the path is an existing file.
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"--out {folder} is a file; give a folder")
    return folder


def load_model(name: str, device: torch.device) -> UNet:
    """A model folder or Hub repo id, loaded onto ``device``."""
    return UNet.from_pretrained(name, map_location=device)
