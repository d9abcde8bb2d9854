"""Export a ``UNet`` to ONNX with dynamic batch, height and width.

The model's own padding (to a multiple of ``2**depth``) is recorded as shape arithmetic in
the graph, so one ``.onnx`` file takes any image size, like ``forward`` does. The config
(classes, normalisation, mask encoding) is embedded as the ``unetseg_config`` metadata entry
so the file describes itself.

This uses PyTorch's TorchScript-based ONNX exporter: the ``torch.export``-based one cannot yet
express "pad to the next multiple of 2**depth" for every size without specialising.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from ._utils import atomic_write, logger
from .errors import UnetsegError
from .model import UNet

__all__ = ["ExportError", "export_onnx"]

DEFAULT_OPSET = 17
#: Padding by a computed amount (to a multiple of 2**depth) needs Pad with a sizes input.
MIN_OPSET = 11


class ExportError(UnetsegError, RuntimeError):
    """The model could not be exported (a missing optional dependency, say)."""


def export_onnx(
    model: UNet,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    example_size: tuple[int, int] = (64, 64),
) -> Path:
    """Write ``model`` as an ONNX file taking (N, C, H, W) float32 images of any size.

    The graph's input is ``image`` (normalised as in training, see
    ``unetseg.imaging.prepare_image``), its output ``logits`` of shape (N, K, H, W).

    Args:
        model: the network to export; exported in eval mode, on the CPU, in float32, then
            returned to its own mode, device and dtype.
        path: the ``.onnx`` file to write (atomically: a failure leaves an old file intact).
        opset: ONNX opset version.
        example_size: (H, W) of the dummy input used to trace; any size works afterwards.

    Returns:
        The path written.

    Raises:
        ExportError: the ``onnx`` package is missing (``pip install "unetseg[onnx]"``),
            ``opset`` is older than 11, or the exporter failed.
    """
    if opset < MIN_OPSET:  # else torch fails with its whole graph in the message and on stdout
        raise ExportError(
            f"opset {opset} cannot express the model's padding to a multiple of 2**depth; "
            f"use opset {MIN_OPSET} or newer (default {DEFAULT_OPSET})"
        )
    try:
        import onnx
    except ImportError:
        raise ExportError(
            'ONNX export needs the onnx package: pip install "unetseg[onnx]"'
        ) from None
    path = Path(path)
    was_training = model.training
    first = next(model.parameters())
    device, dtype = first.device, first.dtype  # .to() and .float() work in place: restore both
    cpu_model = model.to("cpu").float().eval()
    example = torch.zeros(1, model.config.in_channels, *example_size)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # The tracer warns that the input-shape check in forward() becomes a constant;
            # that check guards users of the PyTorch model, not of the exported graph.
            warnings.simplefilter("ignore")
            tmp_path = Path(tmp) / "model.onnx"
            torch.onnx.export(
                cpu_model,
                (example,),
                str(tmp_path),
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": dynamic, "logits": dynamic},
                opset_version=opset,
            )
            graph = onnx.load(str(tmp_path))
    except Exception as err:
        raise ExportError(f"ONNX export of the model failed: {err}") from err
    finally:
        model.to(device, dtype).train(was_training)
    entry = graph.metadata_props.add()
    entry.key = "unetseg_config"
    entry.value = json.dumps(model.config.to_dict())
    onnx.checker.check_model(graph)
    with atomic_write(path) as handle:
        handle.write(graph.SerializeToString())
    logger.info("exported ONNX model to %s (opset %d)", path, opset)
    return path
