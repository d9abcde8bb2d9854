"""Mask files in any common encoding -> class-index arrays, and class indices back to masks.

Users store labels as index PNGs, 0/255 or 0/1 binary masks, a few grey levels, palette
("P") PNGs, RGB drawings with one colour per class, 16-bit TIFFs or ``.npy`` arrays.
This module

1. reads headers cheaply (``scan_header``: size after EXIF orientation, mode, format),
2. decodes a mask file without losing its encoding (``read_mask``: palette *indices*,
   never ``convert("L")``; 16-bit values kept),
3. decides one encoding for a whole data set from the values it holds (``build_codec``)
   and maps raw values or colours to consecutive classes (``MaskCodec.decode``),
4. writes predicted classes back in the user's own encoding (``render_mask``).

Encodings (``UNetConfig.mask_encoding``):

* ``binary``: the values are {0, 255} or {0, 1} -> classes 0/1.
* ``index``: values are 0..K-1 (or below ``len(class_names)``) -> class = value.
* ``grey``: a few other grey levels -> consecutive classes in sorted order.
* ``palette``: "P" images; class = palette index, colours from the palette.
* ``color``: RGB(A) masks; colours from a user ``color_map`` or discovered in sorted
  (R, G, B) order, so black comes first.

``ignore_index`` values pass through untouched and are never a class.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ._utils import logger
from .errors import DatasetError, ImageError
from .imaging import DEFAULT_MAX_PIXELS, open_image, oriented_size

__all__ = [
    "MAX_COLORS",
    "MAX_GREY_LEVELS",
    "MAX_INDEX_CLASSES",
    "Header",
    "MaskCodec",
    "MaskSummary",
    "RawMask",
    "build_codec",
    "default_colors",
    "load_npy",
    "parse_color_map",
    "read_mask",
    "render_mask",
    "scan_header",
    "summarize",
]

#: More distinct non-consecutive grey levels than this looks like JPEG artefacts, not classes.
MAX_GREY_LEVELS = 16
#: Consecutive values 0..K-1 are taken as class indices without ``class_names`` up to this K.
MAX_INDEX_CLASSES = 64
#: More discovered colours than this looks like antialiasing or JPEG, not a colour map.
MAX_COLORS = 32

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
    """

    array: np.ndarray
    kind: str
    palette: tuple[Color, ...] | None = None
    lossy: bool = False


@dataclass(frozen=True)
class MaskSummary:
    """Distinct raw values (or packed 0xRRGGBB colours) of one mask with pixel counts."""

    name: str
    kind: str
    counts: Mapping[int, int]
    palette: tuple[Color, ...] | None = None
    lossy: bool = False


# --------------------------------------------------------------------------- reading


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except (ValueError, OSError, EOFError) as err:
        raise ImageError(
            f"{path}: not a valid .npy file ({err}); save arrays with numpy.save"
        ) from None
    if dtype.hasobject:
        raise ImageError(
            f"{path}: holds Python objects (a pickle), which are never loaded for safety; "
            "save a plain numeric array with numpy.save(path, array)"
        )
    return tuple(shape), dtype


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Load a ``.npy`` array with ``allow_pickle=False``.

    Raises:
        ImageError: not a .npy file, truncated, or holding pickled objects.
    """
    path = Path(path)
    _npy_header(path)  # a clear message for pickles before numpy's own
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ImageError(f"{path}: cannot be loaded ({err}); the file may be truncated") from None
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{path}: expected one array (.npy), got {type(array).__name__}")
    return array


def scan_header(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Read size, mode and format from a file's header only.

    Raises:
        ImageError: missing, not an image, a pickled .npy, or more than ``max_pixels`` pixels.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        shape, dtype = _npy_header(path)
        if len(shape) not in (2, 3) or 0 in shape:
            raise ImageError(f"{path}: expected an (H, W) or (H, W, C) array, got shape {shape}")
        if shape[0] * shape[1] > max_pixels:
            raise ImageError(
                f"{path}: {shape[1]}x{shape[0]} pixels exceeds max_pixels={max_pixels:,}; "
                "raise max_pixels if the array is genuine"
            )
        channels = shape[2] if len(shape) == 3 else 1
        return Header((shape[1], shape[0]), f"npy:{dtype}", "NPY", channels)
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
        ImageError: unreadable, truncated, non-integer float values or negative values.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return mask_from_array(load_npy(path), name=str(path))
    image = open_image(path, max_pixels=max_pixels)
    try:
        with image:
            lossy = (image.format or "") in _LOSSY_FORMATS
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
                kind, array = "color", _pack(np.asarray(image.convert("RGB")))
            else:  # L, I;16*, I, F
                kind, array = "scalar", np.asarray(image)
    except OSError as err:
        raise ImageError(f"{path}: cannot be decoded ({err}); the file may be truncated") from None
    if kind == "scalar":
        array = _integer_mask(array, str(path))
    return RawMask(np.ascontiguousarray(array), kind, palette, lossy)


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
    if array.size and int(array.min()) < 0:
        raise ImageError(
            f"{name}: mask holds negative values (min {int(array.min())}); "
            "masks must hold non-negative class values"
        )
    return array


def mask_from_array(array: np.ndarray, *, name: str = "array") -> RawMask:
    """Wrap a user's numpy mask: (H, W) integer values or (H, W, 3/4) colours.

    Raises:
        ImageError: wrong shape or dtype.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
                raise ImageError(f"{name}: colour masks must be uint8 (H, W, 3), got {array.dtype}")
            array = array.astype(np.uint8)
        return RawMask(_pack(array[:, :, :3]), "color")
    if array.ndim != 2 or 0 in array.shape:
        raise ImageError(
            f"{name}: a mask must be (H, W) class values or (H, W, 3) colours, got shape {array.shape}"
        )
    return RawMask(np.ascontiguousarray(_integer_mask(array, name)), "scalar")


def _pack(colors: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) uint32 0xRRGGBB."""
    c = colors.astype(np.uint32)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def _unpack(key: int) -> Color:
    return ((key >> 16) & 255, (key >> 8) & 255, key & 255)


def summarize(raw: RawMask, name: str) -> MaskSummary:
    """Count the distinct values (or colours) of a decoded mask, cheaply."""
    array = raw.array
    if raw.kind == "color":
        values, counts = np.unique(array, return_counts=True)
    elif array.dtype in (np.uint8, np.uint16):
        hist = np.bincount(array.ravel(), minlength=1)
        values = np.flatnonzero(hist)
        counts = hist[values]
    else:
        values, counts = np.unique(array, return_counts=True)
    table = {int(v): int(n) for v, n in zip(values, counts, strict=True)}
    return MaskSummary(name, raw.kind, table, raw.palette, raw.lossy)


# --------------------------------------------------------------------------- codec


@dataclass(frozen=True)
class MaskCodec:
    """One data set's mapping from raw mask values (or colours) to classes.

    ``keys`` are raw values, or colours packed as 0xRRGGBB, sorted; ``classes`` the class
    of each key (``ignore_index`` for keys that mark pixels to skip).
    """

    encoding: str
    num_classes: int
    class_names: tuple[str, ...]
    mask_values: tuple[int, ...] | None
    class_colors: tuple[Color, ...] | None
    ignore_index: int | None
    keys: tuple[int, ...]
    classes: tuple[int, ...]
    grey_rgb: bool = False  # colour masks whose colours are all grey: read channel 0

    @property
    def dtype(self) -> np.dtype[Any]:
        """Smallest integer dtype holding every class and ``ignore_index``."""
        low = min(0, self.ignore_index if self.ignore_index is not None else 0)
        high = max(self.num_classes - 1, self.ignore_index or 0)
        for dtype in (np.uint8, np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return np.dtype(dtype)
        return np.dtype(np.int64)

    def _raw_keys(self, raw: RawMask) -> np.ndarray:
        if raw.kind == "color" and self.grey_rgb:
            return (raw.array & 255).astype(np.uint8)
        return raw.array

    def decode(self, raw: RawMask, name: str) -> np.ndarray:
        """Map a decoded mask to classes.

        Returns:
            (H, W) array of class indices (and ``ignore_index``) in ``self.dtype``.

        Raises:
            DatasetError: a value or colour that the codec does not know.
        """
        values = self._raw_keys(raw)
        wide = values.dtype in (np.uint32, np.uint64)  # packed colours: compare without casting
        keys = np.asarray(self.keys, dtype=values.dtype if wide else np.int64)
        classes = np.asarray(self.classes, dtype=np.int64)
        if values.dtype in (np.uint8, np.uint16):
            # A lookup table is ~10x faster than searchsorted on 8/16-bit masks.
            size = 256 if values.dtype == np.uint8 else 65536
            known = keys < size
            lut = np.full(size, -1, dtype=np.int64)
            lut[keys[known]] = np.arange(len(keys))[known]
            position = lut[values]
        else:
            position = np.searchsorted(keys, values).clip(0, len(keys) - 1)
            position = np.where(keys[position] == values, position, -1)
        if (position < 0).any():
            bad = np.unique(values[position < 0])[:8]
            shown = [_describe_key(int(v), raw.kind == "color" and not self.grey_rgb) for v in bad]
            raise DatasetError(
                f"{name}: mask value(s) {', '.join(shown)} are not among the classes found at "
                "construction; rebuild the data set"
            )
        out: np.ndarray = classes[position].astype(self.dtype)
        return out

    def class_counts(self, summary: MaskSummary) -> np.ndarray:
        """Pixels per class in one mask, from its value counts: (num_classes,) int64."""
        table = dict(zip(self.keys, self.classes, strict=True))
        out = np.zeros(self.num_classes, dtype=np.int64)
        for key, count in summary.counts.items():
            if self.grey_rgb and summary.kind == "color":
                key = key & 255
            cls = table.get(key)
            if cls is not None and 0 <= cls < self.num_classes:
                out[cls] += count
        return out

    def config_fields(self) -> dict[str, Any]:
        """The ``UNetConfig`` metadata fields this codec decides."""
        return {
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "mask_encoding": self.encoding,
            "mask_values": self.mask_values,
            "class_colors": self.class_colors,
            "ignore_index": self.ignore_index,
        }


def _describe_key(key: int, color: bool) -> str:
    return "#{:02x}{:02x}{:02x}".format(*_unpack(key)) if color else str(key)


def parse_color(color: object) -> Color:
    """A colour as (R, G, B) ints from a tuple/list of three 0-255 ints or "#rrggbb".

    Raises:
        DatasetError: anything else.
    """
    if isinstance(color, str):
        text = color.lstrip("#")
        if len(text) == 6:
            try:
                return _unpack(int(text, 16))
            except ValueError:
                pass
    elif isinstance(color, (tuple, list, np.ndarray)) and len(color) == 3:
        parts = [int(c) for c in color if not isinstance(c, bool) and float(c) == int(c)]
        if len(parts) == 3 and all(0 <= c <= 255 for c in parts):
            return (parts[0], parts[1], parts[2])
    raise DatasetError(
        f"color_map: {color!r} is not a colour; use (R, G, B) with 0-255 or '#rrggbb'"
    )


def parse_color_map(color_map: Mapping[Any, int] | Sequence[Any]) -> dict[Color, int]:
    """A user colour map -> {colour: class}.

    Args:
        color_map: {colour: class} (a class may have several colours; a colour may map to
            ``ignore_index``) or a list of colours, one per class in order.

    Raises:
        DatasetError: a malformed colour or class.
    """
    if isinstance(color_map, Mapping):
        out: dict[Color, int] = {}
        for color, cls in color_map.items():
            if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)):
                raise DatasetError(f"color_map[{color!r}] must be an integer class, got {cls!r}")
            out[parse_color(color)] = int(cls)
        return out
    if isinstance(color_map, (str, bytes)) or not isinstance(color_map, Sequence):
        raise DatasetError("color_map must be a dict {colour: class} or a list of colours")
    colors = [parse_color(c) for c in color_map]
    if len(set(colors)) != len(colors):
        raise DatasetError(f"color_map lists a colour twice: {colors}")
    return {color: cls for cls, color in enumerate(colors)}


def _files_with(summaries: Sequence[MaskSummary], predicate: Any, limit: int = 5) -> str:
    names = [s.name for s in summaries if any(predicate(k) for k in s.counts)]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def build_codec(
    summaries: Sequence[MaskSummary],
    *,
    ignore_index: int | None = None,
    class_names: Sequence[str] | None = None,
    color_map: Mapping[Any, int] | Sequence[Any] | None = None,
) -> MaskCodec:
    """Decide one encoding for all masks of a data set from their value counts.

    Args:
        summaries: one per mask (see ``summarize``).
        ignore_index: a raw value (or, through ``color_map``, a class) that marks pixels
            to skip; it is never a class and passes through unchanged.
        class_names: one name per class; also fixes the number of classes.
        color_map: colour -> class for RGB masks (see ``parse_color_map``).

    Returns:
        The codec; its ``config_fields()`` go into the model config.

    Raises:
        DatasetError: mixed encodings, values outside the classes, JPEG artefacts, too many
            grey levels or colours, a class count that disagrees with ``class_names``.
    """
    if not summaries:
        raise DatasetError("no masks to analyse")
    grey_rgb = color_map is None and all(
        len(set(_unpack(key))) == 1 for s in summaries if s.kind == "color" for key in s.counts
    )
    if grey_rgb and any(s.kind == "color" for s in summaries):
        # RGB files that only hold greys (R = G = B) are grey masks saved as RGB.
        summaries = [
            MaskSummary(s.name, "scalar", {k & 255: n for k, n in s.counts.items()}, None, s.lossy)
            if s.kind == "color"
            else s
            for s in summaries
        ]
    kinds = sorted({s.kind for s in summaries})
    if len(kinds) > 1:
        listing = "; ".join(
            f"{kind}: {_files_with([s for s in summaries if s.kind == kind], lambda _: True, 3)}"
            for kind in kinds
        )
        raise DatasetError(
            f"masks mix encodings ({listing}); save every mask the same way (e.g. all "
            "single-channel index PNGs)"
        )
    kind = kinds[0]
    user_k = len(class_names) if class_names is not None else None
    lossy = [s.name for s in summaries if s.lossy]
    union: dict[int, int] = {}
    for s in summaries:
        for key, count in s.counts.items():
            union[key] = union.get(key, 0) + count
    if color_map is not None and kind != "color":
        raise DatasetError(
            f"color_map was given but the masks are single-channel ({summaries[0].name} is "
            f"{kind}); drop color_map, it is for RGB masks"
        )

    def jpeg_error(count: int, what: str) -> DatasetError:
        return DatasetError(
            f"masks saved as JPEG hold {count} distinct {what} (JPEG compression invents "
            f"in-between values at edges): {', '.join(lossy[:5])}; save masks in a lossless "
            "format such as PNG"
        )

    if kind == "color":
        codec = _color_codec(summaries, union, user_k, color_map, ignore_index, lossy, jpeg_error)
    else:
        values = sorted(v for v in union if v != ignore_index)
        if not values:
            raise DatasetError(
                f"every mask pixel equals ignore_index={ignore_index}; nothing to learn from"
            )
        if lossy and len(values) > 2:
            raise jpeg_error(len(values), "values")
        if kind == "palette":
            codec = _palette_codec(summaries, values, user_k, ignore_index)
        else:
            codec = _scalar_codec(summaries, values, user_k, ignore_index)
    names = _class_names(class_names, codec.num_classes, codec.encoding)
    if ignore_index is not None and 0 <= ignore_index < codec.num_classes:
        raise DatasetError(
            f"ignore_index={ignore_index} is also class {ignore_index} of "
            f"0..{codec.num_classes - 1}; pick a value outside the classes (e.g. 255 or -100)"
        )
    return MaskCodec(
        codec.encoding,
        codec.num_classes,
        names,
        codec.mask_values,
        codec.class_colors,
        ignore_index,
        codec.keys,
        codec.classes,
        grey_rgb,
    )


def _class_names(names: Sequence[str] | None, k: int, encoding: str) -> tuple[str, ...]:
    if names is None:
        return (
            ("background", "foreground")
            if encoding == "binary"
            else tuple(f"class_{i}" for i in range(k))
        )
    out = tuple(names)
    if not all(isinstance(n, str) and n for n in out) or len(set(out)) != len(out):
        raise DatasetError(f"class_names must be unique non-empty strings, got {out!r}")
    if len(out) != k:
        raise DatasetError(f"class_names has {len(out)} names but the masks hold {k} classes")
    return out


def _with_ignore(
    keys: list[int], classes: list[int], ignore_index: int | None, present: Mapping[int, int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if ignore_index is not None and ignore_index in present and ignore_index not in keys:
        keys = [*keys, ignore_index]
        classes = [*classes, ignore_index]
    order = np.argsort(keys)
    return tuple(keys[i] for i in order), tuple(classes[i] for i in order)


def _scalar_codec(
    summaries: Sequence[MaskSummary],
    values: list[int],
    user_k: int | None,
    ignore_index: int | None,
) -> MaskCodec:
    present = {v: 1 for s in summaries for v in s.counts}
    as_set = set(values)
    encoding: str
    mask_values: tuple[int, ...]
    if user_k is None and len(as_set) == 1 and values[0] not in (1, 255):
        raise DatasetError(
            f"every mask holds the single value {values[0]}, so the classes cannot be told "
            "apart; check the masks, or pass class_names to say how many classes there are"
        )
    if user_k in (None, 2) and ((as_set <= {0, 255} and 255 in as_set) or as_set <= {0, 1}):
        high = 255 if 255 in as_set else 1
        encoding, mask_values = "binary", (0, high)
    elif user_k is not None:
        if values[-1] < user_k:
            encoding, mask_values = "index", tuple(range(user_k))
        elif len(values) == user_k:
            encoding, mask_values = "grey", tuple(values)
        else:
            outside = [v for v in values if v >= user_k]
            raise DatasetError(
                f"mask values {outside[:10]} are outside the {user_k} classes of class_names "
                f"(in {_files_with(summaries, lambda v: v in set(outside))}); pass "
                f"ignore_index={outside[0]} if that value marks pixels to skip, or give one "
                "class name per class"
            )
    elif values == list(range(len(values))) and len(values) <= MAX_INDEX_CLASSES:
        encoding, mask_values = "index", tuple(values)
    elif len(values) <= MAX_GREY_LEVELS:
        encoding, mask_values = "grey", tuple(values)
        if values[-1] == 255 and ignore_index is None and len(values) > 2:
            logger.warning(
                "mask value 255 is taken as class %d; pass ignore_index=255 if it marks void pixels",
                len(values) - 1,
            )
    else:
        busiest = sorted(summaries, key=lambda s: -len(s.counts))[:3]
        raise DatasetError(
            f"masks hold {len(values)} distinct grey levels ({values[:6]} ... {values[-3:]}), "
            f"too many to be classes; most in: {', '.join(s.name for s in busiest)}. This is "
            "typical of masks saved as JPEG or resized with interpolation: save masks as PNG "
            "with exact class values, use RGB masks with color_map, or, if these really are "
            "class indices, pass class_names with one name per class"
        )
    k = len(mask_values)
    table = dict(zip(mask_values, range(k), strict=True))
    used = [v for v in mask_values if v in present or encoding == "index"]
    keys, classes = _with_ignore(used, [table[v] for v in used], ignore_index, present)
    if encoding == "index":
        logger.info("masks read as class indices 0..%d", k - 1)
    return MaskCodec(encoding, k, (), mask_values, None, ignore_index, keys, classes)


def _palette_codec(
    summaries: Sequence[MaskSummary],
    values: list[int],
    user_k: int | None,
    ignore_index: int | None,
) -> MaskCodec:
    present = {v: 1 for s in summaries for v in s.counts}
    k = user_k if user_k is not None else values[-1] + 1
    if values[-1] >= k:
        outside = [v for v in values if v >= k]
        raise DatasetError(
            f"palette indices {outside[:10]} are outside the {k} classes of class_names (in "
            f"{_files_with(summaries, lambda v: v in set(outside))}); pass "
            f"ignore_index={outside[0]} if that index marks void pixels"
        )
    if user_k is None and k > MAX_INDEX_CLASSES:
        raise DatasetError(
            f"palette masks use index {values[-1]} but only {len(values)} distinct indices; "
            f"if {values[-1]} marks void/border pixels pass ignore_index={values[-1]}, "
            "otherwise pass class_names with one name per class"
        )
    palette = next(s.palette for s in summaries if s.palette is not None)
    if any(s.palette != palette for s in summaries):
        logger.warning("palette masks have different palettes; class colours come from the first")
    colors = tuple(palette[i] if i < len(palette) else (0, 0, 0) for i in range(k))
    keys, classes = _with_ignore(list(range(k)), list(range(k)), ignore_index, present)
    return MaskCodec("palette", k, (), tuple(range(k)), colors, ignore_index, keys, classes)


def _color_codec(
    summaries: Sequence[MaskSummary],
    union: Mapping[int, int],
    user_k: int | None,
    color_map: Mapping[Any, int] | Sequence[Any] | None,
    ignore_index: int | None,
    lossy: list[str],
    jpeg_error: Any,
) -> MaskCodec:
    if color_map is not None:
        mapping = {
            _pack(np.array(c, dtype=np.uint8)).item(): cls
            for c, cls in parse_color_map(color_map).items()
        }
        class_ids = sorted({c for c in mapping.values() if c != ignore_index})
        if any(c < 0 for c in class_ids):
            raise DatasetError(
                f"color_map maps to negative classes {[c for c in class_ids if c < 0]}; "
                "classes are 0..K-1 (set ignore_index to skip a colour)"
            )
        k = user_k if user_k is not None else class_ids[-1] + 1
        missing = [c for c in range(k) if c not in class_ids]
        if missing or class_ids[-1] >= k:
            raise DatasetError(
                f"color_map must give a colour to every class 0..{k - 1}; classes {missing} have "
                f"none and classes {[c for c in class_ids if c >= k]} are out of range"
            )
        unknown = sorted(set(union) - set(mapping))
        if unknown:
            shown = ", ".join(_describe_key(u, True) for u in unknown[:8])
            raise DatasetError(
                f"mask colours {shown} are not in color_map (in "
                f"{_files_with(summaries, lambda v: v in set(unknown))}); add them to color_map "
                "or map them to ignore_index"
            )
        first: dict[int, int] = {}
        for key, cls in mapping.items():
            first.setdefault(cls, key)
        colors = tuple(_unpack(first[c]) for c in range(k))
        keys = sorted(mapping)
        return MaskCodec(
            "color", k, (), None, colors, ignore_index, tuple(keys), tuple(mapping[x] for x in keys)
        )
    found = sorted(union)
    if lossy and len(found) > 2:
        raise jpeg_error(len(found), "colours")
    if len(found) > MAX_COLORS:
        raise DatasetError(
            f"RGB masks hold {len(found)} distinct colours, too many to be classes (antialiased "
            "edges or JPEG); draw masks without antialiasing and save as PNG, or pass "
            "color_map={colour: class} and list every colour"
        )
    if user_k is not None and user_k != len(found):
        raise DatasetError(
            f"RGB masks hold {len(found)} colours but class_names has {user_k} names; pass "
            "color_map={colour: class} to say which colour is which class"
        )
    colors = tuple(_unpack(k) for k in found)
    logger.info("mask colours -> classes: %s", {c: i for i, c in enumerate(colors)})
    return MaskCodec(
        "color", len(found), (), None, colors, ignore_index, tuple(found), tuple(range(len(found)))
    )


# --------------------------------------------------------------------------- writing back


def default_colors(num_classes: int) -> tuple[Color, ...]:
    """Distinct colours for showing classes (the PASCAL VOC bit-interleaved palette)."""
    colors = []
    for index in range(num_classes):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors.append((r, g, b))
    return tuple(colors)


def render_mask(
    classes: np.ndarray,
    *,
    mask_encoding: str | None,
    mask_values: Sequence[int] | None = None,
    class_colors: Sequence[Sequence[int]] | None = None,
) -> Image.Image:
    """Write class indices back in the encoding the training masks used.

    Args:
        classes: (H, W) integer class indices 0..K-1.
        mask_encoding: from the config; ``None`` writes class indices.
        mask_values: original value per class (binary, grey).
        class_colors: RGB per class (palette, color).

    Returns:
        A PIL image: "L" (or "I;16" for values above 255) for index/binary/grey, "P" with
        the training palette for palette, "RGB" for color.

    Raises:
        ValueError: ``classes`` is not 2-D, or the metadata the encoding needs is missing.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2:
        raise ValueError(f"classes must be (H, W), got shape {classes.shape}")
    classes = classes.astype(np.int64)
    if mask_encoding in ("palette", "color"):
        if class_colors is None:
            raise ValueError(f"mask_encoding={mask_encoding!r} needs class_colors")
        table = np.asarray(class_colors, dtype=np.uint8).reshape(-1, 3)
        if mask_encoding == "color":
            return Image.fromarray(table[classes])
        image = Image.fromarray(classes.astype(np.uint8))
        image.putpalette(table.ravel().tolist())  # turns the "L" image into "P", indices kept
        return image
    if mask_encoding in ("binary", "grey"):
        if mask_values is None:
            raise ValueError(f"mask_encoding={mask_encoding!r} needs mask_values")
        values = np.asarray(mask_values, dtype=np.int64)[classes]
    else:
        values = classes
    if values.max(initial=0) <= 255:
        return Image.fromarray(values.astype(np.uint8))
    return Image.fromarray(values.astype(np.uint16))
