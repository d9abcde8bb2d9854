"""The ``unetseg`` command line (also ``python -m unetseg``): train, segment, evaluate, export.

Exit codes scripts can rely on:

* 0: success;
* 1: an error unetseg detected (missing folder, unreadable image, bad data...), printed as
  one ``error: <message>`` line on stderr, without a traceback;
* 2: a usage error (unknown flag, bad flag value), reported by argparse;
* 130: interrupted with Ctrl-C.

This package is the user interface, so it prints; the library itself only logs. This
module holds the parser and ``main``; each subcommand's flags, help and handler live in
its own module (``_train``, ``_segment``, ``_evaluate``, ``_export``).
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import UnetsegError
from . import _evaluate, _export, _segment, _train
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

_EXAMPLES = """\
examples:
  unetseg train data/images data/masks --out runs/cells --max-time 600
  unetseg segment runs/cells new_images/ --out predictions --overlay
  unetseg evaluate runs/cells test/images test/masks
  unetseg export runs/cells cells.onnx

Run 'unetseg COMMAND --help' for the flags of one command.
exit codes: 0 success, 1 error (one 'error: ...' line on stderr), 2 usage error,
130 interrupted."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks and appends each flag's default, when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # Identity, not ==: a default of 0 (--seed, --workers) equals False but is shown.
        default = action.default
        if action.option_strings and all(
            default is not v for v in (None, False, argparse.SUPPRESS)
        ):
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
    for name, summary, command in (
        ("train", "train a U-Net on a folder of images and masks", _train),
        ("segment", "segment images, write masks (and overlays)", _segment),
        ("evaluate", "score a model on images with true masks", _evaluate),
        ("export", "export a model to ONNX", _export),
    ):
        command.add_arguments(
            commands.add_parser(
                name,
                help=summary,
                description=summary[0].upper() + summary[1:] + ".",
                epilog=command.HELP,
                formatter_class=_Formatter,
                parents=[common],
            )
        )
    return parser


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

    # A Windows console or pipe may not encode every file or class name (cp1252 has no
    # CJK): write such characters escaped, as stderr does, instead of failing at the end.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
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
