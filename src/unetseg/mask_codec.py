"""``MaskCodec``: one data set's mapping from raw mask values (or colours) to classes.

``mask_encoding.build_codec`` decides the mapping once, from every mask of a data set;
the codec then turns each decoded mask (``masks.RawMask``) into an (H, W) class-index
array, counts pixels per class, and gives the ``UNetConfig`` fields that let inference
write predictions back in the same encoding (``visualize.mask_image``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NoReturn

import numpy as np

from .config import UNetConfig
from .errors import DatasetError
from .masks import Color, MaskSummary, RawMask, describe_key, pack_colors, unpack_color

__all__ = ["MaskCodec"]


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
    # From a trained model's config: the masks may be saved another way than the training
    # masks were, and are converted where that is unambiguous (palette PNGs -> their
    # colours for a colour encoding; RGB masks with R = G = B -> grey values otherwise).
    converts_kinds: bool = False

    @classmethod
    def from_config(cls, config: UNetConfig) -> MaskCodec:
        """The mapping a trained model's config records, to decode new masks the same way.

        A validation or test set must not rediscover its own mapping: one that lacks a class,
        or holds grey levels in another order, would silently get other class numbers.

        The codec also reads masks saved another way than the training masks when the
        meaning is unambiguous: palette ("P") masks for a colour encoding (each index
        becomes its palette colour, as ``unetseg segment`` writes colour predictions) and
        RGB masks with R = G = B for the other encodings.

        Raises:
            DatasetError: the config lacks what its ``mask_encoding`` needs.
        """
        k, ignore = config.num_classes, config.ignore_index
        encoding = config.mask_encoding or "index"
        if encoding == "color":
            if config.class_colors is None:
                raise DatasetError("the model config has mask_encoding='color' but no class_colors")
            colors = np.asarray(config.class_colors, dtype=np.uint8)
            keys = [int(v) for v in pack_colors(colors)]
        elif encoding in ("binary", "grey"):
            if config.mask_values is None:
                raise DatasetError(
                    f"the model config has mask_encoding={encoding!r} but no mask_values"
                )
            keys = list(config.mask_values)
        else:  # index, palette: raw values (palette indices) are the classes
            keys = list(config.mask_values) if config.mask_values is not None else list(range(k))
        classes = list(range(k))
        if encoding == "color" and ignore is not None and config.ignore_colors:
            void = pack_colors(np.asarray(config.ignore_colors, dtype=np.uint8))
            keys, classes = [*keys, *map(int, void)], [*classes, *[ignore] * len(void)]
        if ignore is not None and encoding != "color" and ignore not in keys:
            keys, classes = [*keys, ignore], [*classes, ignore]
        order = np.argsort(keys)
        names = config.class_names or tuple(f"class_{i}" for i in range(k))
        return cls(
            encoding,
            k,
            tuple(names),
            config.mask_values,
            config.class_colors,
            ignore,
            tuple(keys[i] for i in order),
            tuple(classes[i] for i in order),
            converts_kinds=True,
        )

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

    def _raw_keys(self, raw: RawMask, name: str) -> tuple[np.ndarray, bool]:
        """The mask's values in the codec's key space, and whether they are packed colours.

        Raises:
            DatasetError: a mask of another kind than the codec reads (``converts_kinds``).
        """
        if raw.kind == "color" and self.grey_rgb:
            return (raw.array & 255).astype(np.uint8), False
        if not self.converts_kinds:
            return raw.array, raw.kind == "color"
        if self.encoding == "color":
            if raw.kind == "palette":  # e.g. masks written by 'unetseg segment'
                return pack_colors(_palette_table(raw.palette)[raw.array]), True
            if raw.kind != "color":
                raise DatasetError(
                    f"{name}: a single-channel mask, but the model was trained on RGB colour "
                    "masks; give masks drawn in the training colours"
                )
        elif raw.kind == "color":
            if not _all_grey(raw.array):
                raise DatasetError(
                    f"{name}: an RGB colour mask, but the model was trained on "
                    f"{self.encoding} masks; give single-channel masks"
                )
            return (raw.array & 255).astype(np.uint8), False
        return raw.array, raw.kind == "color"

    def decode(self, raw: RawMask, name: str) -> np.ndarray:
        """Map a decoded mask to classes.

        Returns:
            (H, W) array of class indices (and ``ignore_index``) in ``self.dtype``.

        Raises:
            DatasetError: a value or colour that the codec does not know, or (for a codec
                from ``from_config``) a mask of a kind that the model's encoding cannot read.
        """
        if raw.values is not None:
            # A compact mask: map each of its distinct values once, then index the result.
            distinct = replace(raw, array=raw.values, values=None, counts=None)
            return _take(self.decode(distinct, name), raw.array)
        values, colors = self._raw_keys(raw, name)
        if values.dtype in (np.uint8, np.uint16):
            # Map every possible value once; the pixels then go through a table, which is
            # ~10x faster than a search per pixel.
            possible = np.arange(256 if values.dtype == np.uint8 else 65536, dtype=values.dtype)
            position = self._positions(possible)
            unknown = _present(values, possible[position < 0])
            if unknown.size:
                self._refuse(unknown, colors, name)
            table = np.asarray(self.classes)[position.clip(0)].astype(self.dtype)
            return _take(table, values)
        position = self._positions(values)
        if (position < 0).any():
            self._refuse(np.unique(values[position < 0]), colors, name)
        out: np.ndarray = np.asarray(self.classes)[position].astype(self.dtype)
        return out

    def _positions(self, values: np.ndarray) -> np.ndarray:
        """Index in ``keys`` of each value, or -1 where the value is not a key."""
        wide = values.dtype in (np.uint32, np.uint64)  # packed colours: compare without casting
        keys = np.asarray(self.keys, dtype=values.dtype if wide else np.int64)
        position = np.searchsorted(keys, values).clip(0, len(keys) - 1)
        out: np.ndarray = np.where(keys[position] == values, position, -1)
        return out

    def _refuse(self, unknown: np.ndarray, colors: bool, name: str) -> NoReturn:
        """Raise for mask values the codec does not know (``unknown``: sorted, distinct)."""
        shown = ", ".join(describe_key(int(v), colors) for v in unknown[:8])
        expected = ", ".join(describe_key(int(v), colors) for v in self.keys)
        if self.converts_kinds:
            raise DatasetError(
                f"{name}: mask value(s) {shown} are not among the model's classes (it "
                f"knows {expected}); give masks in the encoding the model was trained on"
            )
        # Reached at construction by a data set built with like=train_data, later only
        # if a file changed on disk.
        raise DatasetError(
            f"{name}: mask value(s) {shown} are not among the classes found at "
            f"construction ({expected}); with like=, masks may hold only the reference "
            "data set's values (map new colours or values in it, e.g. to ignore_index); "
            "if the file changed since, rebuild the data set"
        )

    def class_counts(self, summary: MaskSummary) -> np.ndarray:
        """Pixels per class in one mask, from its value counts: (num_classes,) int64."""
        table = dict(zip(self.keys, self.classes, strict=True))
        palette = None
        if self.converts_kinds and self.encoding == "color" and summary.kind == "palette":
            palette = pack_colors(_palette_table(summary.palette))
        out = np.zeros(self.num_classes, dtype=np.int64)
        for key, count in summary.counts.items():
            if palette is not None:
                key = int(palette[key])
            elif summary.kind == "color" and (
                self.grey_rgb or (self.converts_kinds and self.encoding != "color")
            ):
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
            "ignore_colors": self.ignore_colors,
        }

    @property
    def ignore_colors(self) -> tuple[Color, ...] | None:
        """Colours of a colour encoding that map to ``ignore_index``; None if none."""
        if self.encoding != "color" or self.ignore_index is None:
            return None
        pairs = zip(self.keys, self.classes, strict=True)
        return tuple(unpack_color(k) for k, c in pairs if c == self.ignore_index) or None


def _take(table: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``table[indices]``: (H, W) indices into a 1-D table -> (H, W) of the table's dtype."""
    if table.dtype == np.uint8 and indices.dtype == np.uint8:
        # bytes.translate is one C loop; numpy's indexing first widens 1-byte indices to
        # int64 and is ~5x slower. A bytearray keeps the result writable.
        full = np.zeros(256, dtype=np.uint8)
        full[: len(table)] = table[:256]
        data = bytearray(np.ascontiguousarray(indices)).translate(full.tobytes())
        return np.frombuffer(data, dtype=np.uint8).reshape(indices.shape)
    out: np.ndarray = table[indices]
    return out


def _present(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Which of ``candidates`` (sorted, distinct) occur in the small-integer ``values``."""
    if not candidates.size:
        return candidates
    if values.dtype == np.uint8:
        # Deleting every other byte value leaves just the candidates that occur.
        others = np.setdiff1d(np.arange(256, dtype=np.uint8), candidates).tobytes()
        left = bytearray(np.ascontiguousarray(values)).translate(None, others)
        return np.unique(np.frombuffer(left, dtype=np.uint8))
    flagged = np.zeros(65536, dtype=bool)
    flagged[candidates] = True
    return np.unique(values[flagged[values]])


def _palette_table(palette: tuple[Color, ...] | None) -> np.ndarray:
    """A "P" image's palette as a (256, 3) uint8 table; missing entries are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    if palette:
        table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table


def _all_grey(packed: np.ndarray) -> bool:
    """Whether every packed 0xRRGGBB colour has R = G = B."""
    red, green, blue = (packed >> 16) & 255, (packed >> 8) & 255, packed & 255
    return bool(np.array_equal(red, green) and np.array_equal(green, blue))
