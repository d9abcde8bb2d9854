"""``SegmentationDataset``: folders, file lists or numpy arrays -> (image, mask) training pairs.

Construction does all the checking and all the decoding, once:

1. pair files by stem (``x.jpg`` with ``x_mask.png``), ignoring hidden files (``pairing``);
2. read every header (size after EXIF orientation, mode) and refuse non-images,
   decompression bombs, pickled ``.npy`` files and size mismatches - before decoding;
3. decode every mask, learn the encoding (``mask_encoding.build_codec``) and map it to classes;
4. decode every image, infer ``in_channels`` and measure mean/std.

Steps 2-4 fill a ``SampleStore`` (``_store``) that all views of a data set share.
Decoded arrays stay in memory up to ``cache_bytes``; beyond it, items decode on access.
An item crops the raw array first and converts and normalises only the crop, so
augmented items cost about the same whatever the image size.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from ._locate import CONFIG_NAME, read_config
from ._store import SampleStore
from ._utils import is_integer, is_number, logger
from .augment import Augment, Foreground, crop_with_padding
from .config import UNetConfig
from .errors import DatasetError
from .imaging import DEFAULT_MAX_PIXELS, prepare_image
from .mask_codec import MaskCodec
from .masks import color_hex
from .pairing import Inputs, resolve_inputs

__all__ = ["AugmentFn", "SegmentationDataset"]

#: A user augmentation: (image (C, H, W) float, mask (H, W) int64, rng) -> (image, mask).
AugmentFn = Callable[
    [torch.Tensor, torch.Tensor, np.random.Generator], tuple[torch.Tensor, torch.Tensor]
]


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
        in_channels: channels the model takes; inferred if ``None``: the images' own
            channels (grey 1, colour 3, every band of a multi-band file or array), less the
            alpha channel of RGBA / grey + alpha image files. Needed when images mix grey
            and colour.
        augment: ``None`` (items unaugmented; ``fit()`` adds its default ``Augment``),
            ``False`` (never augmented), an ``Augment``, or a callable
            ``(image, mask, rng) -> (image, mask)``.
        cache_bytes: memory for decoded arrays (default 1 GiB); items beyond it decode
            on access. A pickled copy, such as a DataLoader worker started with "spawn"
            (the default on macOS and Windows) receives, leaves the cache behind and
            decodes on access; "fork" workers (Linux) share the cache.
        max_pixels: larger images are refused as possible decompression bombs.
        like: decode and normalise exactly like this training set, trained model,
            ``UNetConfig`` or folder written by ``save_pretrained`` (or its ``config.json``):
            its mask mapping (values or colours -> classes), ignore index,
            mean/std and in_channels are reused instead of measured. Use it for
            validation and test sets, which may lack a class or order grey levels
            differently.
        progress: show tqdm bars while masks and images are read, for reads that take
            more than a second or two (thousands of files, or large ones).

    Items: ``ds[i]`` or ``ds[(i, seed)]``; the tuple form draws the augmentation from
    ``numpy.random.default_rng(seed)``, so it is the same in any process. With a plain
    index, augmentation draws from torch's global RNG.

    Raises:
        DatasetError: any bad input, naming the files and the fix (see ``describe()``
            for what was found when everything is fine).
    """

    _store: SampleStore
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
        like: SegmentationDataset
        | UNetConfig
        | torch.nn.Module
        | str
        | os.PathLike[str]
        | None = None,
        progress: bool = True,
    ) -> None:
        codec = None
        if like is not None:
            codec, reference = _reference(like)
            if ignore_index is None:
                ignore_index = reference.ignore_index
            if mean is None and reference.image_mean is not None:
                mean, std = reference.image_mean, reference.image_std
            in_channels = in_channels or reference.in_channels
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
        ):
            raise DatasetError(f"ignore_index must be an int or None, got {ignore_index!r}")
        if (mean is None) != (std is None):
            raise DatasetError("give mean and std together, or neither to measure them")
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise DatasetError(f"cache_bytes must be a non-negative int, got {cache_bytes!r}")
        self._augment = _with_ignore(augment, ignore_index)
        store = SampleStore(resolve_inputs(images, masks), max_pixels)
        store.cache_bytes, store.progress = cache_bytes, bool(progress)
        self._store, self._indices = store, np.arange(len(store.images))
        store.scan()
        store.read_masks(ignore_index, class_names, color_map, codec)
        store.read_images(in_channels, mean, std)
        logger.info("%s", self.describe())
        _warn_uncached(store)

    # ------------------------------------------------------------------ views

    @classmethod
    def _view(
        cls, store: SampleStore, indices: np.ndarray, augment: Augment | AugmentFn | bool | None
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

    def with_ignore_index(
        self, ignore_index: int, like: SegmentationDataset | None = None
    ) -> SegmentationDataset:
        """The same samples, with mask value ``ignore_index`` read as pixels to skip.

        What ``SegmentationDataset(..., ignore_index=...)`` would have read; ``fit()`` uses
        it when given an ``ignore_index`` for data built without one, so index masks
        0..10 with void 11 make 11 classes, not 12. Decoded images are shared.

        Args:
            ignore_index: the mask value marking void pixels.
            like: a data set already read this way whose mapping to reuse (a validation
                set, which may lack a class, follows its training set).

        Returns:
            The new view (this one if it already skips ``ignore_index``).

        Raises:
            DatasetError: this data set skips another value, or the masks cannot be read
                that way (the value is one of the classes).
        """
        if not is_integer(ignore_index):
            raise DatasetError(f"ignore_index must be an int, got {ignore_index!r}")
        ignore_index = int(ignore_index)
        if self.ignore_index == ignore_index:
            return self
        if self.ignore_index is not None:
            raise DatasetError(
                f"this data set already skips mask value {self.ignore_index}; build it with "
                f"ignore_index={ignore_index} instead, or pass the same value"
            )
        codec = like._store.codec if like is not None else None
        store = self._store.remasked(ignore_index, codec)
        return self._view(store, self._indices, _with_ignore(self._augment, ignore_index))

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
            DatasetError: ``val_fraction`` outside (0, 1), ``seed`` not an int >= 0, or
                fewer than 2 samples.
        """
        if not is_number(val_fraction) or not 0 < val_fraction < 1:
            raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        if not _is_seed(seed):
            raise DatasetError(f"seed must be an int >= 0, got {seed!r}")
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
            TypeError: the key is neither an int nor an (int, int >= 0) tuple.
        """
        seed: int | None = None
        if isinstance(key, tuple):
            if len(key) != 2 or not _is_seed(key[1]):
                raise TypeError(f"keys are an index or (index, seed >= 0), got {key!r}")
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
        labels = store.mask(index)  # first: crops may be centred on one of its classes
        foreground = Foreground(labels, store.foreground_classes(index))
        plan = augment.plan(height, width, rng, foreground)
        raw, pads = crop_with_padding(store.image(index), plan, height, width)
        mask, _ = crop_with_padding(labels, plan, height, width)
        image = prepare_image(raw, store.in_channels, store.mean, store.std, name=store.name(index))
        return augment.finish(image, torch.from_numpy(mask.astype(np.int64)), pads, rng)

    # ------------------------------------------------------------------ inspection

    @property
    def augment(self) -> Augment | AugmentFn | bool | None:
        """The augmentation setting of this view (see the class docstring)."""
        return self._augment

    @property
    def num_classes(self) -> int:
        """Classes the masks map to (``ignore_index`` not counted)."""
        return self._store.codec.num_classes

    @property
    def in_channels(self) -> int:
        """Channels of every image as the model takes it (given, or 1 grey / 3 colour)."""
        return self._store.in_channels

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per class: ``class_names`` as given, else generated ones."""
        return self._store.codec.class_names

    @property
    def ignore_index(self) -> int | None:
        """The mask value of pixels to skip, or ``None``."""
        return self._store.codec.ignore_index

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the [0, 1]-scaled images (given or measured)."""
        return self._store.mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the [0, 1]-scaled images (given or measured)."""
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
            image_mean, image_std, ignore_index and ignore_colors (colour masks' void
            colours).
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
                origin += (", " if origin else "") + f"colour {color_hex(codec.class_colors[cls])}"
            lines.append(f"    {cls}: {name:<16} {origin:<28} {100 * freq:6.2f}% of pixels")
        images, masks = store.held()
        lines.append(
            f"  cache: {images}/{len(store.images)} images and {masks}/{len(store.masks)} "
            f"masks in memory ({store.cached_bytes / 2**20:.1f} MiB of "
            f"{store.cache_bytes / 2**20:.0f} MiB)"
        )
        lines.append(f"  augment: {self._augment!r}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"SegmentationDataset({len(self)} samples, in_channels={self.in_channels}, "
            f"num_classes={self.num_classes}, mask_encoding={self._store.codec.encoding!r})"
        )


#: Image files at least this big that miss the cache get a warning: every patch drawn from
#: one decodes it whole (an 8000 x 8000 PNG: about 3 s a patch, against milliseconds).
_BIG_IMAGE_PIXELS = 4_000_000


def _warn_uncached(store: SampleStore) -> None:
    missed = [
        i
        for i, source in enumerate(store.images)
        if isinstance(source, Path)
        and i not in store.image_cache
        and store.shapes[i][0] * store.shapes[i][1] >= _BIG_IMAGE_PIXELS
    ]
    if missed:
        logger.warning(
            "%d of %d image files of %.0f+ megapixels do not fit cache_bytes=%d MiB: fit() "
            "decodes them whole for every patch it draws (seconds each for large PNG/TIFF); "
            "to train on them, raise cache_bytes to keep them in memory (first: %s)",
            len(missed), len(store.images), _BIG_IMAGE_PIXELS / 1e6,
            store.cache_bytes // 2**20, store.name(missed[0]),
        )  # fmt: skip


def _is_seed(value: object) -> bool:
    # What numpy.random.default_rng takes as a seed, checked here to fail with our message.
    return is_integer(value) and int(value) >= 0


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


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


def _reference(
    like: SegmentationDataset | UNetConfig | torch.nn.Module | str | os.PathLike[str],
) -> tuple[MaskCodec, UNetConfig]:
    """The codec and config fields a ``like=`` argument fixes."""
    if isinstance(like, (str, os.PathLike)):
        like = _saved_config(Path(like))
    if isinstance(like, SegmentationDataset):
        return like._store.codec, UNetConfig(**like.config_fields())
    config = like if isinstance(like, UNetConfig) else getattr(like, "config", None)
    if not isinstance(config, UNetConfig):
        raise DatasetError(
            "like= takes a SegmentationDataset, a UNet, a UNetConfig or a saved-model folder, "
            f"got {type(like).__name__}"
        )
    return MaskCodec.from_config(config), config


def _saved_config(path: Path) -> UNetConfig:
    """The config of a ``save_pretrained`` folder, or of a ``config.json`` given directly."""
    config_path = path / CONFIG_NAME if path.is_dir() else path
    if not config_path.is_file():
        # A Hub id looks like a relative path; loading one needs the network and its cache.
        raise DatasetError(
            f"like={str(path)!r}: no such saved-model folder or {CONFIG_NAME}; pass a folder "
            f"written by model.save_pretrained(), or a model: "
            f"like=UNet.from_pretrained({str(path)!r}) for one on the Hub"
        )
    return read_config(config_path)
