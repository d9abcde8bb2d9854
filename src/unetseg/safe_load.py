"""Reading ``.safetensors`` files that may come from strangers, without trusting them.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each
tensor name to ``{"dtype", "shape", "data_offsets"}``, then the raw tensor bytes. This module
checks every claim of the header against the file itself (sizes, bounds, dtypes, offsets)
*before* a single tensor is allocated, compares names, shapes and dtypes with what a model
expects, and only then lets ``safetensors`` read the data. Nothing here ever unpickles:
a pickle or ``torch.save`` archive renamed to ``.safetensors`` is recognised by its first
bytes and refused.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import WeightsError

__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "TensorInfo",
    "check_finite",
    "check_tensors",
    "load_safetensors",
    "read_header",
    "read_metadata",
]

#: Header size limit. A U-Net header is a few kB; safetensors itself allows 100 MB.
MAX_HEADER_BYTES = 16 * 2**20
#: The dtypes accepted in a file: safetensors name -> (torch dtype, bytes per element).
DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
_NAME_OF_DTYPE = {dtype: name for name, (dtype, _) in DTYPES.items()}
_FIX = "re-save it with model.save_pretrained() or download it again"
_LIST_AT_MOST = 12


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it (already checked against the file)."""

    dtype: str  # safetensors name, e.g. "F32"
    shape: tuple[int, ...]
    start: int  # byte offsets into the data section
    end: int


def _describe_non_safetensors(head: bytes) -> str | None:
    """Name the format of a file that is not safetensors, from its first bytes."""
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle (torch.save/pickle.dump output), which can run code when loaded"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (torch.save output, which holds a pickle that can run code)"
    return None


def read_header(path: str | os.PathLike[str]) -> dict[str, TensorInfo]:
    """Parse and check the header of a safetensors file; read no tensor data.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        Tensor name -> ``TensorInfo``, in file order.

    Raises:
        WeightsError: the file is missing, empty, truncated, a pickle, or its header is
            malformed, too large, uses a dtype outside ``DTYPES``, or has offsets that are out
            of bounds, overlap, leave gaps or disagree with dtype x shape.
    """
    path = Path(path)
    header, data_len = _read_json_header(path)
    header.pop("__metadata__", None)
    infos = {name: _check_entry(path, name, entry, data_len) for name, entry in header.items()}
    _check_layout(path, infos, data_len)
    return dict(sorted(infos.items(), key=lambda item: item[1].start))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string ``__metadata__`` of a safetensors file's header (``{}`` if none); no tensors.

    Raises:
        WeightsError: as ``read_header``, for a file that is not safetensors at all.
    """
    metadata = _read_json_header(Path(path))[0].get("__metadata__")
    if not isinstance(metadata, dict):
        return {}
    return {k: v for k, v in metadata.items() if isinstance(k, str) and isinstance(v, str)}


def _read_json_header(path: Path) -> tuple[dict[str, object], int]:
    """The header as parsed JSON, and the size of the data section after it."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if size < 8:
                raise WeightsError(
                    f"{path}: {'empty' if size == 0 else f'only {size} bytes'}, not a "
                    f"safetensors file (truncated download or interrupted save?); {_FIX}"
                )
            other = _describe_non_safetensors(head)
            if other is not None:
                raise WeightsError(
                    f"{path}: this is {other}; unetseg never unpickles. Convert it where you "
                    "trust its source: load it with torch.load(..., weights_only=True) into a "
                    "UNet and call model.save_pretrained(folder)"
                )
            (header_len,) = struct.unpack("<Q", head)
            if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                raise WeightsError(
                    f"{path}: header claims {header_len:,} bytes but the file has {size:,} "
                    f"bytes (limit {MAX_HEADER_BYTES:,}); the file is truncated or not "
                    f"safetensors; {_FIX}"
                )
            raw = handle.read(header_len)
    except OSError as err:
        if isinstance(err, WeightsError):
            raise
        raise WeightsError(f"{path}: cannot read weights ({err.strerror or err})") from None
    data_len = size - 8 - header_len
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # deep [[[...]]]
        raise WeightsError(f"{path}: header is not valid JSON ({err}); {_FIX}") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: header must be a JSON object; {_FIX}")
    return header, data_len


def _check_entry(path: Path, name: str, entry: object, data_len: int) -> TensorInfo:
    def bad(what: str) -> WeightsError:
        return WeightsError(f"{path}: tensor {name!r} {what}; {_FIX}")

    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise bad("must be an object with exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise bad(f"has dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise bad(f"has shape {shape!r}; expected a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise bad(f"has data_offsets {offsets!r}; expected [begin, end] integers")
    start, end = offsets
    if not 0 <= start <= end <= data_len:
        raise bad(f"has data_offsets [{start}, {end}] outside the {data_len:,}-byte data section")
    nbytes = math.prod(shape) * DTYPES[dtype][1]
    if end - start != nbytes:
        raise bad(f"spans {end - start:,} bytes but {dtype} x {shape} needs {nbytes:,}")
    return TensorInfo(dtype, tuple(shape), start, end)


def _check_layout(path: Path, infos: Mapping[str, TensorInfo], data_len: int) -> None:
    # safetensors requires tensors to tile the data section exactly: no overlap, no gap.
    position = 0
    for name, info in sorted(infos.items(), key=lambda item: (item[1].start, item[1].end)):
        if info.start != position:
            what = "overlaps the previous tensor" if info.start < position else "leaves a gap"
            raise WeightsError(f"{path}: tensor {name!r} {what} in the data section; {_FIX}")
        position = info.end
    if position != data_len:
        raise WeightsError(
            f"{path}: {data_len - position:,} bytes after the last tensor are not described "
            f"by the header; {_FIX}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_LIST_AT_MOST])
    more = len(names) - _LIST_AT_MOST
    return shown + (f" and {more} more" if more > 0 else "")


def check_tensors(
    path: str | os.PathLike[str],
    header: Mapping[str, TensorInfo],
    expected: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    context: str = "",
) -> None:
    """Compare the header's names, shapes and dtypes with a model's ``state_dict``.

    ``expected`` may live on the meta device: only shapes and dtypes are read.

    Args:
        path: the weights file, for messages.
        header: from ``read_header(path)``.
        expected: name -> tensor of the model the weights are for.
        strict: also refuse missing and unexpected names (else they are only reported by
            the caller).
        context: appended to the message (which config the model was built from, say).

    Raises:
        WeightsError: every disagreement, listed, with a hint for ``module.`` prefixes.
    """
    problems = []
    missing = set(expected) - set(header)
    unexpected = set(header) - set(expected)
    if strict and missing:
        problems.append(f"missing from the file: {_names(missing)}")
    if strict and unexpected:
        problems.append(f"not in the model: {_names(unexpected)}")
    for name in sorted(set(expected) & set(header)):
        info, want = header[name], expected[name]
        if info.shape != tuple(want.shape):
            problems.append(
                f"{name}: shape {list(info.shape)} in the file, {list(want.shape)} in the model"
            )
        want_dtype = _NAME_OF_DTYPE.get(want.dtype, str(want.dtype))
        if info.dtype != want_dtype:
            problems.append(f"{name}: dtype {info.dtype} in the file, {want_dtype} in the model")
    if not problems:
        return
    hint = ""
    wrappers = (
        ("module.", "DistributedDataParallel/DataParallel"),
        ("_orig_mod.", "torch.compile"),
    )
    for prefix, origin in wrappers:
        if header and all(name.startswith(prefix) for name in header):
            hint = (
                f" Every name in the file starts with {prefix!r}: it was saved from a "
                f"{origin} wrapper; save the inner model instead (model.module or "
                f"model._orig_mod), or strip the prefix from the names before saving."
            )
    raise WeightsError(
        f"{path}: the weights do not fit the model{context}: " + "; ".join(problems) + "." + hint
    )


def check_finite(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse NaN or infinite values in floating-point tensors.

    Raises:
        WeightsError: naming each tensor with non-finite values and how many.
    """
    bad = {
        name: int((~torch.isfinite(t)).sum())
        for name, t in tensors.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    }
    if bad:
        listed = ", ".join(f"{name} ({count})" for name, count in sorted(bad.items()))
        raise WeightsError(
            f"{path}: non-finite (NaN/inf) values in {listed}; training diverged before this "
            "was saved. Use an earlier checkpoint, or pass allow_nonfinite=True to load anyway"
        )


def load_safetensors(
    path: str | os.PathLike[str],
    expected: Mapping[str, torch.Tensor] | None = None,
    *,
    strict: bool = True,
    allow_nonfinite: bool = False,
    context: str = "",
) -> dict[str, torch.Tensor]:
    """Check a safetensors file completely, then read its tensors onto the CPU.

    Args:
        path: the ``.safetensors`` file.
        expected: a model's ``state_dict`` (meta tensors are fine) to check the header
            against before reading data; ``None`` skips that comparison.
        strict: refuse missing/unexpected names (see ``check_tensors``).
        allow_nonfinite: accept NaN/inf values instead of refusing them.
        context: appended to mismatch messages.

    Returns:
        Tensor name -> CPU tensor.

    Raises:
        WeightsError: see ``read_header``, ``check_tensors`` and ``check_finite``.
    """
    header = read_header(path)
    if expected is not None:
        check_tensors(path, header, expected, strict=strict, context=context)
    try:
        tensors = load_file(os.fspath(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:  # e.g. changed since the check
        raise WeightsError(f"{path}: cannot read the weights ({err}); {_FIX}") from None
    if not allow_nonfinite:
        check_finite(path, tensors)
    return tensors
