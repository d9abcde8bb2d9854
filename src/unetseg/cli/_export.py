"""``unetseg export``: a model to an ONNX file."""

from __future__ import annotations

import argparse

import torch

from ..export import DEFAULT_OPSET, export_onnx
from ._common import EXIT_OK, MODEL_HELP, load_model, positive_int

__all__ = ["HELP", "add_arguments", "run"]

HELP = """\
The graph takes 'image' (N, C, H, W) float32 of any height and width, normalised with the
config's image_mean/image_std, and returns 'logits' (N, K, H, W). The config is embedded as
the 'unetseg_config' metadata entry. Needs: pip install "unetseg[onnx]".

examples:
  unetseg export model model.onnx
  unetseg export org/unet-cells cells.onnx --opset 18"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``export`` flags, and ``run`` as the handler."""
    p.set_defaults(handler=run)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("output", metavar="OUT.onnx", help="the file to write")
    p.add_argument(
        "--opset",
        type=positive_int,
        default=DEFAULT_OPSET,
        metavar="N",
        help="ONNX opset version, 11 or newer",
    )


def run(args: argparse.Namespace) -> int:
    """Export the model on CPU, print where it went."""
    model = load_model(args.model, torch.device("cpu"))
    path = export_onnx(model, args.output, opset=args.opset)
    print(f"wrote {path} (ONNX opset {args.opset})")
    return EXIT_OK
