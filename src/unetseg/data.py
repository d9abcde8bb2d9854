"""``SegmentationDataset``: folders, file lists or numpy arrays -> (image, mask) training pairs.

Construction does all the checking and all the decoding, once:

1. pair files by stem (``x.jpg`` with ``x_mask.png``), ignoring hidden files;
2. read every header (size after EXIF orientation, mode) and refuse non-images,
   decompression bombs, pickled ``.npy`` files and size mismatches - before decoding;
3. decode every mask, learn the encoding (``masks.build_codec``) and map it to classes;
4. decode every image, infer ``in_channels`` and measure mean/std.

Decoded arrays stay in memory up to ``cache_bytes``; beyond it, items decode on access.
An item crops the raw array first and converts and normalises only the crop, so
augmented items cost about the same whatever the image size.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
import torch.utils.data

from ._utils import logger
from .augment import Augment, crop_with_padding, foreground_points
from .errors import DatasetError, ImageError
from .imaging import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    convert_channels,
    prepare_image,
    read_image,
    to_unit_range,
)
from .masks import (
    MaskCodec,
    MaskSummary,
    RawMask,
    build_codec,
    load_npy,
    mask_from_array,
    read_mask,
    scan_header,
    summarize,
)

__all__ = ["AugmentFn", "SegmentationDataset", "pair_files"]

#: A user augmentation: (image (C, H, W) float, mask (H, W) int64, rng) -> (image, mask).
AugmentFn = Callable[
    [torch.Tensor, torch.Tensor, np.random.Generator], tuple[torch.Tensor, torch.Tensor]
]
Source: TypeAlias = Path | np.ndarray
Inputs: TypeAlias = str | os.PathLike[str] | np.ndarray | Sequence[Any]

_EXTENSIONS = (*IMAGE_EXTENSIONS, ".npy")
_MASK_SUFFIXES = (
    "mask", "masks", "label", "labels", "lbl", "gt", "groundtruth", "ground_truth", "seg",
    "segmentation", "annotation", "annotations", "anno", "target", "trimap",
)  # fmt: skip
_IMAGE_SUFFIXES = ("image", "img", "im", "input", "raw")
_SEPARATORS = ("_", "-", ".", " ")
_STATS_PIXELS = 16_384  # mean/std are estimated from about this many pixels per image
_MAX_LISTED = 10


def _listing(items: Sequence[object], limit: int = _MAX_LISTED) -> str:
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(str(i) for i in items[:limit]) + more


def _pair_key(stem: str, suffixes: Sequence[str]) -> str:
    lower = stem.lower()
    for suffix in suffixes:
        for sep in _SEPARATORS:
            tail = sep + suffix
            if lower.endswith(tail) and len(stem) > len(tail):
                return stem[: -len(tail)]
    return stem


def _list_folder(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{what} folder {folder} does not exist or is not a folder")
    entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in entries if p.suffix.lower() in _EXTENSIONS]
    skipped = [p.name for p in entries if p.suffix.lower() not in _EXTENSIONS]
    if skipped:
        logger.info(
            "%s: ignoring %d non-image file(s): %s", folder, len(skipped), _listing(skipped)
        )
    if not files:
        raise DatasetError(
            f"{what} folder {folder} holds no image files (hidden files such as .DS_Store and "
            f"._x.png are ignored; accepted: {', '.join(_EXTENSIONS)}); point to the folder "
            "that holds the images"
        )
    return files


def _keyed(files: list[Path], suffixes: Sequence[str], what: str) -> dict[str, Path]:
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(_pair_key(path.stem, suffixes), []).append(path)
    duplicates = [" + ".join(p.name for p in group) for group in groups.values() if len(group) > 1]
    if duplicates:
        raise DatasetError(
            f"{what} folder {files[0].parent} has several files for the same stem: "
            f"{_listing(duplicates)}; keep one file per stem (remove or rename the others)"
        )
    return {key: group[0] for key, group in groups.items()}


def pair_files(
    image_dir: str | os.PathLike[str], mask_dir: str | os.PathLike[str]
) -> list[tuple[Path, Path]]:
    """Pair images with masks by file stem.

    Mask stems may carry a suffix (``_mask``, ``_label``, ``_gt``, ``-seg``, ...), image
    stems ``_image``/``_img``; extensions may differ (``x.jpg`` with ``x.png``). Hidden
    files and non-image files are ignored.

    Returns:
        (image, mask) paths, sorted by image name.

    Raises:
        DatasetError: an empty folder, several files with one stem, or unmatched stems
            (all listed).
    """
    images = _keyed(_list_folder(Path(image_dir), "image"), _IMAGE_SUFFIXES, "image")
    masks = _keyed(_list_folder(Path(mask_dir), "mask"), _MASK_SUFFIXES, "mask")
    lonely_images = sorted(images[k].name for k in images.keys() - masks.keys())
    lonely_masks = sorted(masks[k].name for k in masks.keys() - images.keys())
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"images without a mask in {mask_dir}: {_listing(lonely_images)}")
        if lonely_masks:
            parts.append(f"masks without an image in {image_dir}: {_listing(lonely_masks)}")
        raise DatasetError(
            "; ".join(parts) + ". Masks pair with images by file stem (x.jpg with x.png or "
            "x_mask.png); rename them, or pass two lists of paths in matching order"
        )
    return sorted(((images[k], masks[k]) for k in images), key=lambda pair: pair[0].name)


def _sources(items: Inputs, what: str) -> list[Source]:
    if isinstance(items, np.ndarray):
        if items.ndim < 3:
            raise DatasetError(
                f"{what}: a single array must stack N items as (N, H, W) or (N, H, W, C), got "
                f"shape {items.shape}; pass a list of arrays for one item"
            )
        return list(items)
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise DatasetError(f"{what}: expected a folder, a list of paths or a list of arrays")
    out: list[Source] = []
    for item in items:
        if isinstance(item, np.ndarray):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.append(Path(item))
        elif isinstance(item, torch.Tensor):
            out.append(item.detach().cpu().numpy())
        else:
            raise DatasetError(f"{what}: {type(item).__name__} is neither a path nor an array")
    return out


def _resolve(images: Inputs, masks: Inputs) -> list[tuple[Source, Source]]:
    folders = [isinstance(x, (str, os.PathLike)) for x in (images, masks)]
    if all(folders):
        return [(i, m) for i, m in pair_files(images, masks)]  # type: ignore[arg-type]
    if any(folders):
        raise DatasetError(
            "pass images and masks the same way: two folders, or two lists in matching order"
        )
    image_list, mask_list = _sources(images, "images"), _sources(masks, "masks")
    if len(image_list) != len(mask_list):
        raise DatasetError(
            f"{len(image_list)} images but {len(mask_list)} masks; the lists pair by position"
        )
    if not image_list:
        raise DatasetError("no images given; pass a folder or a non-empty list")
    return list(zip(image_list, mask_list, strict=True))


def _name(source: Source, index: int, what: str) -> str:
    return str(source) if isinstance(source, Path) else f"{what}[{index}]"


def _native(array: np.ndarray, name: str) -> np.ndarray:
    """Keep dtypes whose [0, 1] scaling does not depend on content; rescale the rest now."""
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ImageError(f"{name}: expected an (H, W) or (H, W, C) image, got shape {array.shape}")
    if array.dtype in (np.uint8, np.uint16, np.bool_):
        return array
    unit = to_unit_range(array)  # checks NaN/inf too
    return unit


def _natural_channels(channels: int) -> int:
    """Channels a model should take for an image with ``channels``: alpha is dropped."""
    return {2: 1, 4: 3}.get(channels, channels)


class _Store:
    """Sources, decoded-array cache and per-sample facts shared by a data set's views."""

    def __init__(self, pairs: list[tuple[Source, Source]], max_pixels: int) -> None:
        self.images = [p[0] for p in pairs]
        self.masks = [p[1] for p in pairs]
        self.max_pixels = max_pixels
        self.image_cache: dict[int, np.ndarray] = {}
        self.mask_cache: dict[int, np.ndarray] = {}
        self.cached_bytes = 0
        self.cache_bytes = 0
        self.codec: MaskCodec
        self.counts = np.zeros((0, 0), dtype=np.int64)  # (N, K) pixels per class
        self.foreground: list[np.ndarray] = []
        self.shapes: list[tuple[int, int]] = []
        self.in_channels = 0
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()

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

    def image(self, index: int) -> np.ndarray:
        cached = self.image_cache.get(index)
        if cached is not None:
            return cached
        source = self.images[index]
        if isinstance(source, np.ndarray) and source.dtype in (np.uint8, np.uint16, np.bool_):
            return source
        return self.decode_image(index)

    def mask(self, index: int) -> np.ndarray:
        cached = self.mask_cache.get(index)
        if cached is not None:
            return cached
        return self.codec.decode(self.decode_raw_mask(index), self.name(index, "mask"))


def _collect(errors: list[str], fix: str) -> None:
    if errors:
        raise DatasetError(f"{len(errors)} bad file(s): {'; '.join(errors[:_MAX_LISTED])}. {fix}")


class SegmentationDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images and masks as ``(image (C, H, W) float32, mask (H, W) int64)`` pairs.

    Args:
        images: a folder, a list of paths, a list of (H, W) / (H, W, C) arrays, or one
            stacked (N, H, W[, C]) array. Files: PNG, JPEG, TIFF (8/16-bit, float), BMP,
            ... and ``.npy``; EXIF orientation is applied.
        masks: the same for masks: a folder (paired with image files by stem), a list in
            the images' order, (H, W) integer arrays or (H, W, 3) colour arrays.
        ignore_index: a mask value marking pixels to skip; it passes through unchanged
            and is never a class (e.g. 255 for void in 0..10 index masks).
        class_names: one name per class; also fixes the number of classes.
        color_map: for RGB masks: {colour: class} or a list of colours in class order.
            Colours are (R, G, B) tuples or "#rrggbb". Without it, colours are discovered
            and numbered in sorted (R, G, B) order.
        mean: per-channel mean of [0, 1]-scaled images; measured from the data if ``None``.
        std: per-channel standard deviation, given with ``mean``.
        in_channels: channels the model takes; inferred if ``None`` (grey 1, colour 3,
            alpha dropped), and needed when images mix grey and colour.
        augment: ``None`` (items unaugmented; ``fit()`` adds its default ``Augment``),
            ``False`` (never augmented), an ``Augment``, or a callable
            ``(image, mask, rng) -> (image, mask)``.
        cache_bytes: memory for decoded arrays (default 1 GiB); items beyond it decode
            on access.
        max_pixels: larger images are refused as possible decompression bombs.

    Items: ``ds[i]`` or ``ds[(i, seed)]``; the tuple form draws the augmentation from
    ``numpy.random.default_rng(seed)``, so it is the same in any process. With a plain
    index, augmentation draws from torch's global RNG.

    Raises:
        DatasetError: any bad input, naming the files and the fix (see ``describe()``
            for what was found when everything is fine).
    """

    _store: _Store
    _indices: np.ndarray
    _augment: Augment | AugmentFn | bool | None

    def __init__(
        self,
        images: Inputs,
        masks: Inputs,
        *,
        ignore_index: int | None = None,
        class_names: Sequence[str] | None = None,
        color_map: Mapping[Any, int] | Sequence[Any] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        in_channels: int | None = None,
        augment: Augment | AugmentFn | bool | None = None,
        cache_bytes: int = 2**30,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
        ):
            raise DatasetError(f"ignore_index must be an int or None, got {ignore_index!r}")
        if (mean is None) != (std is None):
            raise DatasetError("give mean and std together, or neither to measure them")
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise DatasetError(f"cache_bytes must be a non-negative int, got {cache_bytes!r}")
        self._augment = _with_ignore(augment, ignore_index)
        store = _Store(_resolve(images, masks), max_pixels)
        store.cache_bytes = cache_bytes
        self._store, self._indices = store, np.arange(len(store.images))
        self._scan()
        self._read_masks(ignore_index, class_names, color_map)
        self._read_images(in_channels, mean, std)
        logger.info("%s", self.describe())

    # ------------------------------------------------------------------ construction

    def _scan(self) -> None:
        """Headers only: refuse non-images, bombs and pickles, and compare sizes."""
        store, errors, mismatched = self._store, [], []
        shapes: list[tuple[int, int]] = []
        for index, (image, mask) in enumerate(zip(store.images, store.masks, strict=True)):
            sizes = []
            for source in (image, mask):
                try:
                    if isinstance(source, Path):
                        size = scan_header(source, max_pixels=store.max_pixels).size
                        sizes.append((size[1], size[0]))
                    else:
                        sizes.append((int(source.shape[0]), int(source.shape[1])))
                except ImageError as err:
                    errors.append(str(err))
            if len(sizes) == 2 and sizes[0] != sizes[1]:
                mismatched.append(
                    f"{store.name(index)} is {sizes[0][1]}x{sizes[0][0]} but "
                    f"{store.name(index, 'mask')} is {sizes[1][1]}x{sizes[1][0]}"
                )
            shapes.append(sizes[0] if sizes else (0, 0))
        _collect(errors, "Remove these files or re-save them as PNG.")
        if mismatched:
            raise DatasetError(
                f"image and mask sizes differ (width x height, after EXIF orientation): "
                f"{_listing(mismatched)}; masks must have their image's size - check the pairing "
                "or resize the mask with nearest-neighbour interpolation"
            )
        store.shapes = shapes

    def _read_masks(
        self,
        ignore_index: int | None,
        class_names: Sequence[str] | None,
        color_map: Mapping[Any, int] | Sequence[Any] | None,
    ) -> None:
        """Decode every mask once: learn the encoding, count classes, cache class maps."""
        store, errors = self._store, []
        summaries: list[MaskSummary] = []
        raws: dict[int, RawMask] = {}
        for index in range(len(store.masks)):
            name = store.name(index, "mask")
            try:
                raw = store.decode_raw_mask(index)
            except ImageError as err:
                errors.append(str(err))
                continue
            summaries.append(summarize(raw, name))
            if sum(r.array.nbytes for r in raws.values()) + raw.array.nbytes <= store.cache_bytes:
                raws[index] = raw
        _collect(errors, "Remove these masks or re-save them as PNG.")
        store.codec = build_codec(
            summaries, ignore_index=ignore_index, class_names=class_names, color_map=color_map
        )
        counts = []
        for index, summary in enumerate(summaries):
            kept = raws.pop(index, None)
            raw = kept if kept is not None else store.decode_raw_mask(index)
            classes = store.codec.decode(raw, summary.name)
            _check_shape(classes.shape, store.shapes[index], summary.name)
            store.keep(store.mask_cache, index, classes)
            store.foreground.append(foreground_points(classes, ignore_index))
            counts.append(store.codec.class_counts(summary))
        store.counts = np.stack(counts)

    def _read_images(
        self,
        in_channels: int | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        """Decode every image once: check it, settle in_channels, measure mean and std."""
        store, errors = self._store, []
        channels: dict[int, list[str]] = {}
        decoded: list[np.ndarray | None] = []
        for index in range(len(store.images)):
            try:
                array = store.decode_image(index)
            except ImageError as err:
                errors.append(str(err))
                decoded.append(None)
                continue
            _check_shape(array.shape[:2], store.shapes[index], store.name(index))
            found = _natural_channels(array.shape[2] if array.ndim == 3 else 1)
            channels.setdefault(found, []).append(store.name(index))
            store.keep(store.image_cache, index, array)
            decoded.append(array if index in store.image_cache else None)
        _collect(errors, "Remove these images or re-save them as PNG.")
        if in_channels is None:
            if len(channels) > 1:
                groups = "; ".join(
                    f"{c} channel(s): {_listing(names, 3)}" for c, names in sorted(channels.items())
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
        store.in_channels = in_channels
        if mean is not None and std is not None:
            store.mean, store.std = _check_stats(mean, std, in_channels)
            return
        total = np.zeros(in_channels)
        squares = np.zeros(in_channels)
        pixels = 0
        for index in range(len(store.images)):
            kept = decoded[index]
            array = kept if kept is not None else store.decode_image(index)
            stride = max(1, math.isqrt(array.shape[0] * array.shape[1] // _STATS_PIXELS))
            sample = convert_channels(to_unit_range(array[::stride, ::stride]), in_channels)
            flat = sample.reshape(-1, in_channels).astype(np.float64)
            total += flat.sum(axis=0)
            squares += (flat**2).sum(axis=0)
            pixels += flat.shape[0]
        means = total / pixels
        stds = np.sqrt(np.maximum(squares / pixels - means**2, 0.0))
        stds = np.where(stds < 1e-6, 1.0, stds)  # constant images: do not blow them up
        store.mean = tuple(float(m) for m in means)
        store.std = tuple(float(s) for s in stds)

    # ------------------------------------------------------------------ views

    @classmethod
    def _view(
        cls, store: _Store, indices: np.ndarray, augment: Augment | AugmentFn | bool | None
    ) -> SegmentationDataset:
        view = cls.__new__(cls)
        view._store, view._indices, view._augment = store, indices, augment
        return view

    def with_augment(self, augment: Augment | AugmentFn | bool | None) -> SegmentationDataset:
        """A view of the same samples (sharing the decoded cache) with another augmentation.

        Args:
            augment: ``None``, ``False``, an ``Augment`` (given this data set's
                ``ignore_index`` if it has none) or a callable ``(image, mask, rng)``.

        Returns:
            The new view; this one is unchanged.
        """
        return self._view(self._store, self._indices, _with_ignore(augment, self.ignore_index))

    def split(
        self, val_fraction: float = 0.2, seed: int = 0
    ) -> tuple[SegmentationDataset, SegmentationDataset]:
        """Split into seeded, disjoint (train, validation) views.

        The train view keeps this view's augmentation; the validation view never augments.
        Both share this data set's decoded cache.

        Args:
            val_fraction: share of samples for validation (at least one each side).
            seed: seed of the permutation; the same seed gives the same split.

        Returns:
            (train view, validation view), each in the original sample order.

        Raises:
            DatasetError: ``val_fraction`` outside (0, 1), or fewer than 2 samples.
        """
        if isinstance(val_fraction, bool) or not 0 < val_fraction < 1:
            raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        if len(self) < 2:
            raise DatasetError(f"cannot split {len(self)} sample(s); add more images")
        n_val = min(len(self) - 1, max(1, round(val_fraction * len(self))))
        order = np.random.default_rng(seed).permutation(len(self))
        val = np.sort(self._indices[order[:n_val]])
        train = np.sort(self._indices[order[n_val:]])
        return (
            self._view(self._store, train, self._augment),
            self._view(self._store, val, False),
        )

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One training pair.

        Args:
            key: an index, or ``(index, seed)`` to draw the augmentation from
                ``numpy.random.default_rng(seed)``.

        Returns:
            image (C, H, W) float32, normalised; mask (H, W) int64 class indices, with
            ``ignore_index`` where pixels are to be skipped.

        Raises:
            IndexError: the index is out of range.
            TypeError: the key is neither an int nor an (int, int) tuple.
        """
        seed: int | None = None
        if isinstance(key, tuple):
            if len(key) != 2:
                raise TypeError(f"keys are an index or (index, seed), got {key!r}")
            key, seed = key
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise TypeError(f"dataset index must be an int, got {type(key).__name__}")
        position = int(key)
        if not -len(self) <= position < len(self):
            raise IndexError(f"index {position} out of range for {len(self)} samples")
        index = int(self._indices[position])
        augment = self._augment
        if augment is None or augment is False:
            return self._plain(index)
        if seed is None:  # a plain index: torch's global RNG, seeded per DataLoader worker
            seed = int(torch.randint(0, 2**62, (1,)).item())
        rng = np.random.default_rng(seed)
        if isinstance(augment, Augment):
            return self._cropped(index, augment, rng)
        if callable(augment):
            return augment(*self._plain(index), rng)
        raise DatasetError(
            f"augment must be an Augment, a callable, False or None, got {augment!r}"
        )

    def _plain(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        store = self._store
        image = prepare_image(
            store.image(index), store.in_channels, store.mean, store.std, name=store.name(index)
        )
        return image, torch.from_numpy(store.mask(index).astype(np.int64))

    def _cropped(
        self, index: int, augment: Augment, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Crop the raw array first: conversion and normalisation then touch only the patch.
        store = self._store
        height, width = store.shapes[index]
        plan = augment.plan(height, width, rng, store.foreground[index])
        raw, pads = crop_with_padding(store.image(index), plan, height, width)
        mask, _ = crop_with_padding(store.mask(index), plan, height, width)
        image = prepare_image(raw, store.in_channels, store.mean, store.std, name=store.name(index))
        return augment.finish(image, torch.from_numpy(mask.astype(np.int64)), pads, rng)

    # ------------------------------------------------------------------ inspection

    @property
    def augment(self) -> Augment | AugmentFn | bool | None:
        """The augmentation setting of this view (see the class docstring)."""
        return self._augment

    @property
    def num_classes(self) -> int:
        return self._store.codec.num_classes

    @property
    def in_channels(self) -> int:
        return self._store.in_channels

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._store.codec.class_names

    @property
    def ignore_index(self) -> int | None:
        return self._store.codec.ignore_index

    @property
    def mean(self) -> tuple[float, ...]:
        return self._store.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self._store.std

    @property
    def paths(self) -> list[tuple[Path | None, Path | None]]:
        """(image path, mask path) per sample; ``None`` for arrays."""
        store = self._store
        return [
            tuple(s if isinstance(s, Path) else None for s in (store.images[i], store.masks[i]))  # type: ignore[misc]
            for i in self._indices
        ]

    def class_frequencies(self) -> np.ndarray:
        """Fraction of (non-ignored) pixels per class in this view: (num_classes,) float64."""
        counts = self._store.counts[self._indices].sum(axis=0).astype(np.float64)
        out: np.ndarray = counts / max(counts.sum(), 1.0)
        return out

    def config_fields(self) -> dict[str, Any]:
        """The ``UNetConfig`` fields this data decides, for ``model.config.replace(**...)``.

        Returns:
            in_channels, num_classes, class_names, mask_encoding, mask_values (``None``
            for colour masks), class_colors (``None`` unless palette/colour masks),
            image_mean, image_std and ignore_index.
        """
        fields = self._store.codec.config_fields()
        fields.update(in_channels=self.in_channels, image_mean=self.mean, image_std=self.std)
        return fields

    def describe(self) -> str:
        """A human-readable summary: samples, sizes, channels, encoding, classes."""
        store, codec = self._store, self._store.codec
        shapes = [store.shapes[i] for i in self._indices]
        heights, widths = [s[0] for s in shapes], [s[1] for s in shapes]
        size = (
            f"{widths[0]}x{heights[0]}"
            if len(set(shapes)) == 1
            else f"{min(widths)}-{max(widths)} x {min(heights)}-{max(heights)}"
        )
        lines = [
            f"SegmentationDataset: {len(self)} samples, {size} px, in_channels={self.in_channels}",
            f"  mean={_fmt(self.mean)} std={_fmt(self.std)} (of [0, 1]-scaled images)",
            f"  masks: {codec.encoding}, {self.num_classes} classes"
            + (f", ignore_index={self.ignore_index}" if self.ignore_index is not None else ""),
        ]
        for cls, (name, freq) in enumerate(
            zip(self.class_names, self.class_frequencies(), strict=True)
        ):
            origin = ""
            if codec.mask_values is not None:
                origin = f"value {codec.mask_values[cls]}"
            if codec.class_colors is not None:
                origin += (", " if origin else "") + "colour #{:02x}{:02x}{:02x}".format(
                    *codec.class_colors[cls]
                )
            lines.append(f"    {cls}: {name:<16} {origin:<28} {100 * freq:6.2f}% of pixels")
        cached = len(store.image_cache)
        lines.append(
            f"  cache: {cached}/{len(store.images)} images decoded in memory "
            f"({store.cached_bytes / 2**20:.1f} MiB of {store.cache_bytes / 2**20:.0f} MiB)"
        )
        lines.append(f"  augment: {self._augment!r}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"SegmentationDataset({len(self)} samples, in_channels={self.in_channels}, "
            f"num_classes={self.num_classes}, mask_encoding={self._store.codec.encoding!r})"
        )


def _check_shape(found: tuple[int, ...], expected: tuple[int, int], name: str) -> None:
    # The header scan compares sizes; this catches orientation tags it could not see.
    if tuple(found) != expected:
        raise DatasetError(
            f"{name}: decoded as {found[1]}x{found[0]} but its pair is "
            f"{expected[1]}x{expected[0]} (width x height, after EXIF orientation); masks must "
            "have their image's size"
        )


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


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


def _with_ignore(
    augment: Augment | AugmentFn | bool | None, ignore_index: int | None
) -> Augment | AugmentFn | bool | None:
    if augment is True:
        raise DatasetError("augment=True is ambiguous; pass Augment(...) or leave it None")
    if augment is not None and augment is not False and not callable(augment):
        raise DatasetError(
            f"augment must be None, False, an Augment or a callable (image, mask, rng), "
            f"got {augment!r}"
        )
    if isinstance(augment, Augment) and augment.ignore_index is None and ignore_index is not None:
        return dataclasses.replace(augment, ignore_index=ignore_index)
    return augment
