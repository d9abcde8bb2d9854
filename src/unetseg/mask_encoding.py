"""Which encoding a data set's masks use, decided once from all of them: ``build_codec``.

Encodings (``UNetConfig.mask_encoding``):

* ``binary``: the values are {0, 255} or {0, 1} -> classes 0/1.
* ``index``: values are 0..K-1 (or below ``len(class_names)``) -> class = value.
* ``grey``: a few other grey levels -> consecutive classes in sorted order.
* ``palette``: "P" images; class = palette index, colours from the palette.
* ``color``: RGB(A) masks; colours from a user ``color_map`` (``parse_color_map``) or
  discovered in sorted (R, G, B) order, so black comes first.

``ignore_index`` values pass through untouched and are never a class. The result is a
``MaskCodec`` that maps each decoded mask to consecutive classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._utils import logger
from .errors import DatasetError
from .mask_codec import MaskCodec
from .masks import Color, MaskSummary, describe_key, pack_colors, unpack_color

__all__ = [
    "MAX_COLORS",
    "MAX_GREY_LEVELS",
    "MAX_INDEX_CLASSES",
    "build_codec",
    "default_class_names",
    "parse_color",
    "parse_color_map",
]

#: More distinct non-consecutive grey levels than this looks like JPEG artefacts, not classes.
MAX_GREY_LEVELS = 16
#: Consecutive values 0..K-1 are taken as class indices without ``class_names`` up to this K.
MAX_INDEX_CLASSES = 64
#: More discovered colours than this looks like antialiasing or JPEG, not a colour map.
MAX_COLORS = 32


def parse_color(color: object) -> Color:
    """A colour as (R, G, B) ints from a tuple/list of three 0-255 ints or "#rrggbb".

    Raises:
        DatasetError: anything else.
    """
    if isinstance(color, str):
        text = color.lstrip("#")
        if len(text) == 6:
            try:
                return unpack_color(int(text, 16))
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
        len(set(unpack_color(key))) == 1 for s in summaries if s.kind == "color" for key in s.counts
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
        if values[0] < 0:
            negative = [v for v in values if v < 0]
            raise DatasetError(
                f"masks hold negative values {negative[:10]} (in "
                f"{_files_with(summaries, lambda v: v in set(negative))}); classes are 0..K-1, "
                f"so pass ignore_index={negative[0]} if that value marks pixels to skip"
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


def default_class_names(num_classes: int, encoding: str) -> tuple[str, ...]:
    """The names a data set read without ``class_names`` gives its classes."""
    if encoding == "binary":
        return ("background", "foreground")
    return tuple(f"class_{i}" for i in range(num_classes))


def _class_names(names: Sequence[str] | None, k: int, encoding: str) -> tuple[str, ...]:
    if names is None:
        return default_class_names(k, encoding)
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
    if user_k is None and len(as_set) == 1 and ignore_index in present:
        # 0/255 binary masks with ignore_index=255 (a common copy of VOC's void setting).
        raise DatasetError(
            f"besides ignore_index={ignore_index} every mask holds only the value {values[0]}, "
            f"so no classes are left to learn; if {ignore_index} is a class (the foreground "
            f"of {values[0]}/{ignore_index} binary masks), leave ignore_index out"
        )
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
        elif values[-1] < MAX_INDEX_CLASSES:
            # Grey levels this dark are hard to tell apart by eye: more likely class indices
            # of which some are absent from these masks.
            logger.warning(
                "mask values %s are read as %d grey levels, renumbered 0..%d; if they are "
                "class indices with some classes absent, pass class_names (one per class)",
                values, len(values), len(values) - 1,
            )  # fmt: skip
    elif values[:-1] == list(range(len(values) - 1)) and len(values) <= MAX_INDEX_CLASSES:
        # Index masks plus one void value, e.g. VOC's 0..20 with 255 saved as "L" PNGs.
        raise DatasetError(
            f"masks hold class indices 0..{values[-2]} and the value {values[-1]} (in "
            f"{_files_with(summaries, lambda v: v == values[-1])}); if {values[-1]} marks "
            f"void/border pixels pass ignore_index={values[-1]}, otherwise pass class_names "
            "with one name per class"
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
            pack_colors(np.array(c, dtype=np.uint8)).item(): cls
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
            shown = ", ".join(describe_key(u, True) for u in unknown[:8])
            raise DatasetError(
                f"mask colours {shown} are not in color_map (in "
                f"{_files_with(summaries, lambda v: v in set(unknown))}); add them to color_map "
                "or map them to ignore_index"
            )
        first: dict[int, int] = {}
        for key, cls in mapping.items():
            first.setdefault(cls, key)
        colors = tuple(unpack_color(first[c]) for c in range(k))
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
    colors = tuple(unpack_color(k) for k in found)
    logger.info("mask colours -> classes: %s", {c: i for i, c in enumerate(colors)})
    return MaskCodec(
        "color", len(found), (), None, colors, ignore_index, tuple(found), tuple(range(len(found)))
    )
