"""Mask files: decode them keeping their encoding (values, palette indices, colours).

Users store labels as index PNGs, 0/255 or 0/1 binary masks, a few grey levels, palette
("P") PNGs, RGB drawings with one colour per class, 16-bit TIFFs or ``.npy`` arrays.
This module

1. reads headers cheaply (``scan_header``: size after EXIF orientation, mode, format),
2. decodes a mask file without losing its encoding (``read_mask``: palette *indices*,
   never ``convert("L")``; 16-bit values kept) and counts its values (``summarize``),
3. leaves writing predictions back in the user's encoding to ``visualize.mask_image``.

Which encoding a data set uses and how its values map to classes is decided from the
summaries by ``mask_encoding.build_codec``; the resulting ``mask_codec.MaskCodec`` maps
decoded masks to classes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError
from .imaging import (
    DEFAULT_MAX_PIXELS,
    _misread_tiff,
    load_npy,
    npy_header,
    open_image,
    oriented_size,
)

__all__ = [
    "Color",
    "Header",
    "MaskSummary",
    "RawMask",
    "color_hex",
    "describe_key",
    "mask_from_array",
    "pack_colors",
    "read_mask",
    "scan_header",
    "summarize",
    "unpack_color",
]

#: (R, G, B), each 0-255.
Color = tuple[int, int, int]
_LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")  # WebP may be lossless, but usually is not


@dataclass(frozen=True)
class Header:
    """What a file's header says, read without decoding pixels."""

    size: tuple[int, int]  # (width, height) after EXIF orientation
    mode: str  # PIL mode, or "npy" for numpy files
    format: str  # "PNG", "JPEG", "TIFF", ..., "NPY"
    channels: int  # channels numpy will hold after decoding (P counts as 1 index channel)


@dataclass(frozen=True)
class RawMask:
    """A decoded mask before class mapping.

    ``array`` is (H, W): integer values for ``kind`` "scalar" and "palette", colours
    packed as uint32 0xRRGGBB for "color" (one packing serves both counting and
    decoding). ``palette`` holds the RGB entries of a "P" image.

    A "color" mask of at most 256 colours is compact: ``array`` holds uint8 indices into
    ``values``, the mask's distinct packed colours in ascending order, of which ``counts``
    holds the pixels. It takes a quarter of the memory, and mapping it to classes maps
    each colour once instead of each pixel (``MaskCodec.decode``).
    """

    array: np.ndarray
    kind: str
    palette: tuple[Color, ...] | None = None
    lossy: bool = False
    values: np.ndarray | None = None  # compact masks: the distinct values ``array`` indexes
    counts: np.ndarray | None = None  # compact masks: pixels of each of ``values``


@dataclass(frozen=True)
class MaskSummary:
    """Distinct raw values (or packed 0xRRGGBB colours) of one mask with pixel counts."""

    name: str
    kind: str
    counts: Mapping[int, int]
    palette: tuple[Color, ...] | None = None
    lossy: bool = False


# --------------------------------------------------------------------------- reading


def scan_header(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Read size, mode and format from a file's header only.

    Raises:
        ImageError: missing, not an image, a pickled .npy, or more than ``max_pixels`` pixels.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        shape, dtype = npy_header(path)
        if len(shape) not in (2, 3) or 0 in shape:
            raise ImageError(f"{path}: expected an (H, W) or (H, W, C) array, got shape {shape}")
        if shape[0] * shape[1] > max_pixels:
            raise ImageError(
                f"{path}: {shape[1]}x{shape[0]} pixels exceeds max_pixels={max_pixels:,}; "
                "raise max_pixels if the array is genuine"
            )
        channels = shape[2] if len(shape) == 3 else 1
        return Header((shape[1], shape[0]), f"npy:{dtype}", "NPY", channels)
    layout = _misread_tiff(path, max_pixels)
    if layout is not None:  # Pillow cannot open some of these: read_image decodes them
        return Header((layout.width, layout.height), "bands", "TIFF", layout.channels)
    with open_image(path, max_pixels=max_pixels) as image:
        channels = len(image.getbands()) if image.mode not in ("P", "PA") else 1
        try:
            if image.format == "PNG" and "exif" not in image.info:
                # PIL's PNG getexif() decodes the whole image to look for a late eXIf chunk;
                # sizes are checked again after decoding, so the header suffices here.
                size = image.size
            else:
                size = oriented_size(image)
        except (OSError, SyntaxError, ValueError, struct.error) as err:
            raise ImageError(
                f"{path}: cannot be read ({err}); the file may be truncated or corrupt"
            ) from None
        return Header(size, image.mode, image.format or "?", channels)


def read_mask(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> RawMask:
    """Decode a mask file keeping its encoding (EXIF orientation applied, as for images).

    "P" images give their palette indices, 16-bit images their 16-bit values, RGB(A)
    images their colours (alpha dropped); colours that are all grey are still "color"
    here and are recognised as grey levels by ``build_codec``.

    Raises:
        ImageError: unreadable, truncated, or non-integer float values.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return mask_from_array(load_npy(path), name=str(path))
    layout = _misread_tiff(path, max_pixels)
    if layout is not None and layout.pages > 1:  # Pillow would give the first page alone
        raise ImageError(
            f"{path}: {layout.describe()}, but a mask holds one class value per pixel on one "
            "page; save one mask file per page (for a stack of slices, one image file and "
            "one mask file per slice)"
        )
    image = open_image(path, max_pixels=max_pixels)
    try:
        with image:
            lossy = (image.format or "") in _LOSSY_FORMATS
            lossy = lossy and not (image.format == "WEBP" and _lossless_webp(path))
            image.load()
            image = ImageOps.exif_transpose(image)
            palette = None
            mode = image.mode
            if mode in ("P", "PA"):
                palette = _palette_of(image)
                kind = "palette"
                array = np.asarray(image)
                array = array[:, :, 0] if array.ndim == 3 else array
            elif mode == "1":
                kind, array = "scalar", np.asarray(image.convert("L"))
            elif mode == "LA":
                kind, array = "scalar", np.asarray(image.getchannel(0))
            elif mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
                kind, array = "color", _packed_pixels(image)
            else:  # L, I;16*, I, F
                kind, array = "scalar", np.asarray(image)
    except OSError as err:
        raise ImageError(f"{path}: cannot be decoded ({err}); the file may be truncated") from None
    if kind == "color":
        return _compact_colors(array, lossy)
    if kind == "scalar":
        array = _integer_mask(array, str(path))
    return RawMask(np.ascontiguousarray(array), kind, palette, lossy)


def _packed_pixels(image: Image.Image) -> np.ndarray:
    """An image's pixels as (H, W) uint32 0xRRGGBB colours, straight from PIL's buffer."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    # "BGRX" bytes read as little-endian uint32 are 0x00RRGGBB: one C pass, 4x faster at
    # 2048x2048 than widening three channels to uint32 and shifting them (pack_colors).
    data = np.frombuffer(image.tobytes("raw", "BGRX"), dtype="<u4")
    packed = data & np.uint32(0xFFFFFF)  # Pillow writes X as 0, but does not promise to
    return packed.reshape(image.height, image.width)


def _compact_colors(packed: np.ndarray, lossy: bool = False) -> RawMask:
    """A "color" ``RawMask`` of packed colours, compact (uint8 indices) if it has <= 256."""
    if not packed.size:
        return RawMask(packed, "color", lossy=lossy)
    # A sort finds the distinct colours and their counts: numpy 2's np.unique hashes
    # instead, 8x slower on a 2048x2048 mask of a dozen colours.
    ordered = np.sort(packed, axis=None)
    starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    if len(starts) >= 256:  # e.g. a JPEG-compressed mask; build_codec explains those
        return RawMask(np.ascontiguousarray(packed), "color", lossy=lossy)
    values = ordered[np.concatenate([[0], starts])]
    counts = np.diff(np.concatenate([[0], starts, [ordered.size]]))
    if packed.size <= 1 << 16:
        indices = np.searchsorted(values, packed).astype(np.uint8)
    else:
        # A table over every 24-bit colour, 10x faster than a search at 2048x2048 (but
        # slower below 256x256): zero-filled lazily by the OS, so only the pages of the
        # colours present are touched.
        table = np.zeros(1 << 24, dtype=np.uint8)
        table[values] = np.arange(len(values), dtype=np.uint8)
        indices = table[packed]
    return RawMask(indices, "color", None, lossy, values, counts)


def _lossless_webp(path: Path) -> bool:
    """Whether a WebP file's image is a lossless (VP8L) bitstream; PIL does not say."""
    chunks = set()
    with open(path, "rb") as handle:
        handle.seek(12)  # past "RIFF", the size and "WEBP"
        while len(header := handle.read(8)) == 8:
            chunks.add(header[:4])
            size = struct.unpack("<I", header[4:])[0]
            handle.seek(size + size % 2, os.SEEK_CUR)
    return b"VP8L" in chunks and b"VP8 " not in chunks


def _palette_of(image: Image.Image) -> tuple[Color, ...]:
    flat = image.getpalette("RGB") or []
    return tuple((flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat) - 2, 3))


def _integer_mask(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise ImageError(
                f"{name}: a float mask with non-integer values; masks must hold class "
                "values (save them as integer PNG/TIFF or an integer .npy)"
            )
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise ImageError(f"{name}: mask dtype {array.dtype} is not an integer type")
    # Negative values are kept: -1 or -100 may mark void (ignore_index); build_codec
    # refuses any other negative value, naming the files.
    return array


def mask_from_array(array: np.ndarray, *, name: str = "array") -> RawMask:
    """Wrap a user's numpy mask: (H, W) integer values or (H, W, 3/4) colours.

    Raises:
        ImageError: wrong shape or dtype.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.size and _one_hot(array):
        # Colours of 0/1 would be read as 3 near-black colours in reversed class order.
        raise ImageError(
            f"{name}: a (H, W, {array.shape[2]}) mask of 0/1 values looks one-hot, not like "
            "colours; pass class indices, mask.argmax(-1)"
        )
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
                raise ImageError(f"{name}: colour masks must be uint8 (H, W, 3), got {array.dtype}")
            array = array.astype(np.uint8)
        return _compact_colors(pack_colors(array[:, :, :3]))
    if array.ndim != 2 or 0 in array.shape:
        raise ImageError(
            f"{name}: a mask must be (H, W) class values or (H, W, 3) colours, got shape {array.shape}"
        )
    return RawMask(np.ascontiguousarray(_integer_mask(array, name)), "scalar")


def _one_hot(array: np.ndarray) -> bool:
    """Whether an (H, W, C) array holds only 0/1 and its channels differ somewhere."""
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        return False
    if int(array.min()) < 0 or int(array.max()) > 1:
        return False
    return not bool((array == array[:, :, :1]).all())


def pack_colors(colors: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) uint32 0xRRGGBB, one key per colour for counting and lookups."""
    c = colors.astype(np.uint32)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def unpack_color(key: int) -> Color:
    """A packed 0xRRGGBB key -> (R, G, B)."""
    return ((key >> 16) & 255, (key >> 8) & 255, key & 255)


def color_hex(color: Color) -> str:
    """(R, G, B) -> ``#rrggbb``."""
    return "#{:02x}{:02x}{:02x}".format(*color)


def describe_key(key: int, color: bool) -> str:
    """A raw mask value for messages: the number, or ``#rrggbb`` for a packed colour."""
    return color_hex(unpack_color(key)) if color else str(key)


def summarize(raw: RawMask, name: str) -> MaskSummary:
    """Count the distinct values (or colours) of a decoded mask, cheaply."""
    array = raw.array
    if raw.values is not None and raw.counts is not None:
        values, counts = raw.values, raw.counts
    elif raw.kind == "color":
        values, counts = np.unique(array, return_counts=True)
    elif array.dtype in (np.uint8, np.uint16):
        hist = np.bincount(array.ravel(), minlength=1)
        values = np.flatnonzero(hist)
        counts = hist[values]
    else:
        values, counts = np.unique(array, return_counts=True)
    table = {int(v): int(n) for v, n in zip(values, counts, strict=True)}
    return MaskSummary(name, raw.kind, table, raw.palette, raw.lossy)
