"""The samples behind a ``SegmentationDataset``: sources, decoded arrays and per-sample facts.

``SampleStore`` is built once per data set and shared by all of its views (``split``,
``with_augment``). Construction reads everything once, in this order:

1. ``scan``: headers only (size after EXIF orientation); refuse non-images, decompression
   bombs, pickled ``.npy`` files and image/mask size mismatches before decoding anything;
2. ``read_masks``: decode every mask, learn the encoding (``mask_encoding.build_codec``) and
   count pixels per class;
3. ``read_images``: decode every image, settle ``in_channels`` and measure mean/std.

Decoded arrays stay in memory up to ``cache_bytes``; beyond it, samples decode on access.
Masks fill the budget first (``read_masks`` runs first) and that order is kept on purpose:
per byte held, a cached class mask (uint8 up to 255 classes) saves about as much decoding
as a cached image or, for colour masks, 6-11x more (measured at 2048x2048: colour PNG
mask 58 ms per 4 MiB, index PNG mask 9 ms per 4 MiB; RGB JPEG image 15 ms, PNG 30 ms,
lossless WebP 28 ms per 12 MiB). Image arrays given in
a dtype served as they are (uint8, uint16, bool) cost nothing to read and take no budget.
``remasked`` gives a store sharing the decoded images whose masks are read another way
(``fit(ignore_index=...)`` on a data set built without one).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from tqdm.auto import tqdm

from ._tiff import TIFF_SUFFIXES, tiff_layout
from .errors import DatasetError, ImageError
from .imaging import (
    convert_channels,
    has_alpha,
    load_npy,
    npy_header,
    read_image,
    to_unit_range,
)
from .mask_codec import MaskCodec
from .mask_encoding import build_codec
from .masks import (
    MaskSummary,
    RawMask,
    mask_from_array,
    read_mask,
    scan_header,
    summarize,
)
from .pairing import MAX_LISTED, Source, listing

__all__ = ["SampleStore"]

_STATS_PIXELS = 16_384  # mean/std are estimated from about this many pixels per image
_PROGRESS_DELAY = 2.0  # seconds before a reading bar shows: small data sets show none


def _name(source: Source, index: int, what: str) -> str:
    return str(source) if isinstance(source, Path) else f"{what}[{index}]"


def _native(array: np.ndarray, name: str) -> np.ndarray:
    """Keep dtypes whose [0, 1] scaling does not depend on content; rescale the rest now."""
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ImageError(f"{name}: expected an (H, W) or (H, W, C) image, got shape {array.shape}")
    if array.dtype in (np.uint8, np.uint16, np.bool_):
        return array
    try:
        return to_unit_range(array)  # checks NaN/inf too
    except ImageError as err:
        raise ImageError(f"{name}: {err}") from None


def _served_as_given(source: Source) -> TypeGuard[np.ndarray]:
    """An image array in a dtype items read as they are (``_native`` keeps it)."""
    return isinstance(source, np.ndarray) and source.dtype in (np.uint8, np.uint16, np.bool_)


def _natural_channels(channels: int, source: Source) -> int:
    """Channels a model should take for an image with ``channels``: alpha is dropped.

    Only a file can say a channel is alpha (RGBA/LA PNGs, say): arrays and ``.npy`` files
    keep every channel, so a fourth band (near-infrared) is not lost as if it were alpha.
    """
    if channels in (2, 4) and isinstance(source, Path) and has_alpha(source):
        return channels - 1
    return channels


def _channels_first(source: Source, mask_size: tuple[int, int]) -> str:
    """A hint for a (C, H, W) image array whose (H, W) is its mask's, else ''."""
    if isinstance(source, Path) and source.suffix.lower() in TIFF_SUFFIXES:
        layout = tiff_layout(source)
        if layout is None or (layout.pages, layout.height) != mask_size:
            return ""
        # tifffile.imwrite(path, (H, W, C) array) without planarconfig writes H pages of W x C.
        return (
            f" (the TIFF holds {layout.pages} pages of {layout.width}x{layout.height}, read as "
            "one band per page: an (H, W, C) array written one page per row, as "
            "tifffile.imwrite does for other than 3 or 4 bands; write it with "
            "planarconfig='contig', or save a .npy array (H, W, C))"
        )
    shape = source.shape if isinstance(source, np.ndarray) else None
    if isinstance(source, Path) and source.suffix.lower() == ".npy":
        shape = npy_header(source)[0]
    if shape is None or len(shape) != 3 or tuple(shape[1:]) != mask_size:
        return ""
    return (
        f" (the image array is channels-first, shape {tuple(shape)}; images are (H, W, C): "
        "save array.transpose(1, 2, 0) instead)"
    )


def _collect(errors: list[str], fix: str) -> None:
    if errors:
        raise DatasetError(f"{len(errors)} bad file(s): {'; '.join(errors[:MAX_LISTED])}. {fix}")


class SampleStore:
    """Sources, decoded-array cache and per-sample facts shared by a data set's views."""

    def __init__(self, pairs: list[tuple[Source, Source]], max_pixels: int) -> None:
        self.images = [p[0] for p in pairs]
        self.masks = [p[1] for p in pairs]
        self.max_pixels = max_pixels
        self.image_cache: dict[int, np.ndarray] = {}
        self.mask_cache: dict[int, np.ndarray] = {}
        self.cached_bytes = 0
        self.cache_bytes = 0
        self.progress = False  # tqdm bars over the files read at construction
        self.codec: MaskCodec
        self.counts = np.zeros((0, 0), dtype=np.int64)  # (N, K) pixels per class
        self.shapes: list[tuple[int, int]] = []
        self.in_channels = 0
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()
        # read_masks' class_names and color_map, to read the masks again in ``remasked``.
        self.mask_options: tuple[Sequence[str] | None, Mapping[Any, int] | Sequence[Any] | None]
        self.mask_options = (None, None)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for each DataLoader worker started with "spawn" (macOS, Windows), every
        # epoch: shipping up to cache_bytes of decoded arrays to each one costs more memory
        # and time than the worker decoding its samples, which gives the same arrays. The
        # copy does not refill a cache: fit()'s workers live one epoch, reading each sample
        # about once. ("fork" workers, Linux's default, share the parent's cache.)
        state = self.__dict__.copy()
        state.update(image_cache={}, mask_cache={}, cached_bytes=0)
        return state

    def indices(self, desc: str, unit: str) -> Iterator[int]:
        """Every sample index, under a tqdm bar that shows when the loop takes a while."""
        yield from tqdm(
            range(len(self.images)), desc=desc, unit=unit, leave=False,
            delay=_PROGRESS_DELAY, disable=not self.progress,
        )  # fmt: skip

    def name(self, index: int, which: str = "image") -> str:
        source = self.images[index] if which == "image" else self.masks[index]
        return _name(source, index, f"{which}s")

    def keep(self, cache: dict[int, np.ndarray], index: int, array: np.ndarray) -> None:
        if self.cached_bytes + array.nbytes <= self.cache_bytes:
            cache[index] = array
            self.cached_bytes += array.nbytes

    def decode_image(self, index: int) -> np.ndarray:
        source = self.images[index]
        name = self.name(index)
        if isinstance(source, np.ndarray):
            return _native(source, name)
        if source.suffix.lower() == ".npy":
            array = load_npy(source)
        else:
            array = read_image(source, max_pixels=self.max_pixels)
        return _native(array, name)

    def decode_raw_mask(self, index: int) -> RawMask:
        source = self.masks[index]
        if isinstance(source, np.ndarray):
            return mask_from_array(source, name=self.name(index, "mask"))
        return read_mask(source, max_pixels=self.max_pixels)

    def held(self) -> tuple[int, int]:
        """How many images (cached or given as arrays) and masks are in memory."""
        images = sum(
            i in self.image_cache or _served_as_given(s) for i, s in enumerate(self.images)
        )
        return images, len(self.mask_cache)

    def image(self, index: int) -> np.ndarray:
        cached = self.image_cache.get(index)
        if cached is not None:
            return cached
        source = self.images[index]
        if _served_as_given(source):
            return source
        return self.decode_image(index)

    def mask(self, index: int) -> np.ndarray:
        cached = self.mask_cache.get(index)
        if cached is not None:
            return cached
        return self.codec.decode(self.decode_raw_mask(index), self.name(index, "mask"))

    def foreground_classes(self, index: int) -> np.ndarray:
        """The foreground classes of a sample's mask (not 0, not ``ignore_index``), ascending.

        Read from the pixel counts: crops centred on a class find its pixels in the mask
        (``augment.draw_pixel``), so no candidate centres are stored for each sample, nor
        pickled to each "spawn" DataLoader worker.
        """
        present: np.ndarray = np.flatnonzero(self.counts[index])
        ignore = self.codec.ignore_index
        out: np.ndarray = present[(present != 0) & (present != (-1 if ignore is None else ignore))]
        return out

    def scan(self) -> None:
        """Headers only: refuse non-images, bombs and pickles, and compare sizes."""
        errors: list[str] = []
        mismatched: list[str] = []
        shapes: list[tuple[int, int]] = []
        for index, (image, mask) in enumerate(zip(self.images, self.masks, strict=True)):
            sizes = []
            for source in (image, mask):
                try:
                    if isinstance(source, Path):
                        size = scan_header(source, max_pixels=self.max_pixels).size
                        sizes.append((size[1], size[0]))
                    else:
                        sizes.append((int(source.shape[0]), int(source.shape[1])))
                except ImageError as err:
                    errors.append(str(err))
            if len(sizes) == 2 and sizes[0] != sizes[1]:
                mismatched.append(
                    f"{self.name(index)} is {sizes[0][1]}x{sizes[0][0]} but "
                    f"{self.name(index, 'mask')} is {sizes[1][1]}x{sizes[1][0]}"
                    + _channels_first(image, sizes[1])
                )
            shapes.append(sizes[0] if sizes else (0, 0))
        _collect(errors, "Remove these files or re-save them as PNG.")
        if mismatched:
            raise DatasetError(
                f"image and mask sizes differ (width x height, after EXIF orientation): "
                f"{listing(mismatched)}; masks must have their image's size - check the pairing "
                "or resize the mask with nearest-neighbour interpolation"
            )
        self.shapes = shapes

    def read_masks(
        self,
        ignore_index: int | None,
        class_names: Sequence[str] | None,
        color_map: Mapping[Any, int] | Sequence[Any] | None,
        codec: MaskCodec | None = None,
    ) -> None:
        """Decode every mask once: learn the encoding (unless given), count classes, cache.

        A given codec maps each mask as it is read. A learned one is known only once every
        mask has been read: masks are held as read (colour masks compact, a byte a pixel
        like their classes) while they fit the cache budget and mapped then. The others
        are read again only if their classes still fit the cache; the pixel counts come
        from the summaries, so reading them again would be for nothing.
        """
        self.mask_options = (class_names, color_map)
        errors: list[str] = []
        summaries: list[MaskSummary] = []
        raws: dict[int, RawMask] = {}
        raw_bytes = 0  # a running total: summing the kept masks each time was quadratic
        failure: DatasetError | None = None  # raised once every unreadable file is listed
        for index in self.indices("reading masks", "mask"):
            name = self.name(index, "mask")
            try:
                raw = self.decode_raw_mask(index)
            except ImageError as err:
                errors.append(str(err))
                continue
            summaries.append(summarize(raw, name))
            if errors or failure is not None:
                continue
            try:
                _check_shape(raw.array.shape, self.shapes[index], name)
                if codec is not None:
                    self.keep(self.mask_cache, index, codec.decode(raw, name))
                elif raw_bytes + raw.array.nbytes <= self.cache_bytes:
                    raws[index] = raw
                    raw_bytes += raw.array.nbytes
            except DatasetError as err:
                failure = err
        _collect(errors, "Remove these masks or re-save them as PNG.")
        self.codec = codec or build_codec(
            summaries, ignore_index=ignore_index, class_names=class_names, color_map=color_map
        )
        if failure is not None:
            raise failure
        pixel_bytes = self.codec.dtype.itemsize
        for index in self.indices("mapping masks", "mask"):
            held = raws.pop(index, None)
            if held is None:
                height, width = self.shapes[index]
                fits = self.cached_bytes + height * width * pixel_bytes <= self.cache_bytes
                if index in self.mask_cache or not fits:
                    continue
                held = self.decode_raw_mask(index)  # a raw form larger than its classes
            self.keep(self.mask_cache, index, self.codec.decode(held, self.name(index, "mask")))
        self.counts = np.stack([self.codec.class_counts(s) for s in summaries])

    def remasked(self, ignore_index: int, codec: MaskCodec | None = None) -> SampleStore:
        """A copy sharing the decoded images whose masks are read with ``ignore_index``.

        Args:
            ignore_index: the mask value to read as pixels to skip.
            codec: a mapping to decode with instead of learning one (a validation set
                follows its training set's).

        Raises:
            DatasetError: the masks cannot be read that way (e.g. the value is a class).
        """
        # Shares image_cache, so images decode once for both (not copy.copy: it goes
        # through __getstate__, which leaves the caches behind).
        store = SampleStore.__new__(SampleStore)
        store.__dict__.update(self.__dict__)
        store.mask_cache = {}
        store.cached_bytes = self.cached_bytes - sum(a.nbytes for a in self.mask_cache.values())
        store.read_masks(ignore_index, *self.mask_options, codec)
        return store

    def read_images(
        self,
        in_channels: int | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        """Decode every image once: check it, settle in_channels, measure mean and std."""
        errors: list[str] = []
        channels: dict[int, list[str]] = {}
        # Pixel sums per image, taken while the image is decoded: images beyond the cache
        # would otherwise be decoded a second time to measure mean/std. They assume the
        # in_channels given, or else the image's own channels, which is what in_channels
        # becomes whenever the images agree (if they disagree, construction fails below).
        measure = mean is None or std is None
        sums: list[tuple[np.ndarray, np.ndarray, int]] | None = [] if measure else None
        for index in self.indices("reading images", "image"):
            try:
                array = self.decode_image(index)
            except ImageError as err:
                errors.append(str(err))
                continue
            _check_shape(array.shape[:2], self.shapes[index], self.name(index))
            found = _natural_channels(array.shape[2] if array.ndim == 3 else 1, self.images[index])
            channels.setdefault(found, []).append(self.name(index))
            if not _served_as_given(self.images[index]):  # no decoding to save
                self.keep(self.image_cache, index, array)
            if sums is not None:
                try:
                    sums.append(
                        _pixel_sums(array, in_channels if in_channels is not None else found)
                    )
                except ImageError:  # channels in_channels cannot take: refused below
                    sums = None
        _collect(errors, "Remove these images or re-save them as PNG.")
        if in_channels is None:
            if len(channels) > 1:
                groups = "; ".join(
                    f"{c} channel(s): {listing(names, 3)}" for c, names in sorted(channels.items())
                )
                raise DatasetError(
                    f"images disagree on channels ({groups}); pass in_channels=3 to repeat grey "
                    "images as RGB, or in_channels=1 to turn colour images into grey"
                )
            in_channels = next(iter(channels))
        for count, names in channels.items():
            try:
                convert_channels(np.zeros((1, 1, count), np.float32), in_channels, name=names[0])
            except ImageError as err:
                raise DatasetError(f"{err} (in_channels={in_channels})") from None
        self.in_channels = in_channels
        if mean is not None and std is not None:
            self.mean, self.std = _check_stats(mean, std, in_channels)
            return
        if sums is None:  # a conversion the check above let through: raise its error
            sums = [_pixel_sums(self.image(i), in_channels) for i in range(len(self.images))]
        total = np.zeros(in_channels)
        squares = np.zeros(in_channels)
        pixels = 0
        for image_total, image_squares, image_pixels in sums:
            total += image_total
            squares += image_squares
            pixels += image_pixels
        means = total / pixels
        stds = np.sqrt(np.maximum(squares / pixels - means**2, 0.0))
        stds = np.where(stds < 1e-6, 1.0, stds)  # constant images: do not blow them up
        self.mean = tuple(float(m) for m in means)
        self.std = tuple(float(s) for s in stds)


def _pixel_sums(array: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel sums and sums of squares of about ``_STATS_PIXELS`` evenly spread pixels.

    Returns:
        (channels,) float64 sums of [0, 1]-scaled values, the same of their squares, and
        the number of pixels summed.

    Raises:
        ImageError: the image cannot be converted to ``channels``.
    """
    stride = max(1, math.isqrt(array.shape[0] * array.shape[1] // _STATS_PIXELS))
    sample = convert_channels(to_unit_range(array[::stride, ::stride]), channels)
    flat = sample.reshape(-1, channels).astype(np.float64)
    return flat.sum(axis=0), (flat**2).sum(axis=0), flat.shape[0]


def _check_shape(found: tuple[int, ...], expected: tuple[int, int], name: str) -> None:
    # The header scan compares sizes; this catches orientation tags it could not see.
    if tuple(found) != expected:
        raise DatasetError(
            f"{name}: decoded as {found[1]}x{found[0]} but its pair is "
            f"{expected[1]}x{expected[0]} (width x height, after EXIF orientation); masks must "
            "have their image's size"
        )


def _check_stats(
    mean: Sequence[float], std: Sequence[float], in_channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    out = []
    for name, values in (("mean", mean), ("std", std)):
        numbers = tuple(float(v) for v in values)
        if len(numbers) != in_channels or not all(math.isfinite(v) for v in numbers):
            raise DatasetError(
                f"{name} must be {in_channels} finite numbers (one per input channel), got {values!r}"
            )
        out.append(numbers)
    if any(s <= 0 for s in out[1]):
        raise DatasetError(f"std must be positive, got {std!r}")
    return out[0], out[1]
