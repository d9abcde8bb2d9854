"""``segment()``: any image, any size, any form in; class-index masks out.

Preprocessing is ``imaging.prepare_image`` with the model's own config, the very function
training used. Images are run whole when they fit the memory budget and in overlapping,
gaussian-blended tiles when they do not.

Tiling, in short:

* It switches on by itself when the *estimated* activation memory of a whole-image pass
  (``estimate_memory``: about ``40 * base_channels`` bytes per pixel) exceeds ``max_memory``
  (default 1 GiB: about 1.6 megapixels for the default ``base_channels=16``, 0.8 for 32), and
  is forced by ``tile_size``.
* Tiles are square, a multiple of ``2**depth`` (so the pooling grid of every tile lines up
  with the whole image's), overlap by ``overlap`` of their side, start at multiples of
  ``2**depth``, and the last tile of a row or column is shifted inside the image instead of
  padded. Tiles are batched within the memory budget.
* Each tile's probabilities are weighted by a gaussian map (sigma = side / 8, as nnU-Net
  does), so tile borders, which see the least context, count the least.
* Probabilities are summed in a band only one tile row high (plus what one batch spans);
  as soon as a band of rows is final its argmax goes into the small-dtype output, so an
  8192 x 8192 image needs a few tens of MiB of accumulators, not ``K * H * W`` floats
  (unless ``return_probs`` asks for exactly that).
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar, cast, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ._utils import autocast_dtype, check_device, class_argmax, logger
from .config import UNetConfig
from .errors import ImageError, InputError
from .imaging import npy_header, prepare_image
from .model import UNet

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "DEFAULT_TILE_SIZE",
    "ImageInput",
    "estimate_memory",
    "mask_dtype",
    "needs_tiles",
    "segment",
    "segment_iter",
    "tiled_indices",
]

#: Activation memory one forward pass may use before images are tiled (bytes).
DEFAULT_MAX_MEMORY = 1 << 30
#: Largest side of an automatically chosen tile; larger tiles gain little context.
DEFAULT_TILE_SIZE = 1024
#: Tiles show a progress bar when an image has at least this many (and ``progress``).
PROGRESS_MIN_TILES = 8
PROGRESS_MIN_IMAGES = 8  # a list this long gets a bar over its images

#: What ``segment()`` takes as one image.
ImageInput: TypeAlias = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor
# Lists are invariant: a TypeVar lets list[Path] or list[np.ndarray] match the overloads.
_Image = TypeVar("_Image", bound=ImageInput)
ModelInput: TypeAlias = nn.Module | str | os.PathLike[str]
_Result: TypeAlias = tuple[np.ndarray, np.ndarray | None]

# Tensor dims each flip of ``UNetConfig.tta_flips`` mirrors.
_FLIP_DIMS = {"horizontal": -1, "vertical": -2}


def tta_flip_dims(config: UNetConfig) -> list[tuple[int, ...]]:
    """The mirrorings ``segment(tta=True)`` averages over, identity first.

    Every combination of the flips in ``config.tta_flips`` (those the training augmentation
    drew, recorded by ``fit()``); horizontal alone when the config does not say.
    """
    flips = config.tta_flips if config.tta_flips is not None else ("horizontal",)
    dims = [_FLIP_DIMS[flip] for flip in flips]
    return [tuple(d for i, d in enumerate(dims) if mask >> i & 1) for mask in range(2 ** len(dims))]


# Peak activation bytes per pixel per base channel of an inference pass, measured on CPU
# (about 30 for base 16 and 32 at 512-1024 px) and rounded up.
_BYTES_PER_PIXEL_PER_BASE = 40


def estimate_memory(config: UNetConfig, height: int, width: int, batch: int = 1) -> int:
    """Estimate the peak activation memory of one inference pass, in bytes.

    Args:
        config: the model's config (widths and classes matter).
        height: image height in pixels.
        width: image width in pixels.
        batch: images per pass.

    Returns:
        An upper-leaning estimate, used to decide on tiling and on batch sizes.
    """
    per_pixel = (
        _BYTES_PER_PIXEL_PER_BASE * config.base_channels
        + 16 * config.num_classes
        + 8 * config.in_channels
    )
    return int(per_pixel * height * width * batch)


def needs_tiles(config: UNetConfig, height: int, width: int) -> bool:
    """Whether ``segment()`` runs an image of this size in tiles by default.

    True when a whole-image pass would need more than ``DEFAULT_MAX_MEMORY`` of
    activations (``estimate_memory``).
    """
    return estimate_memory(config, height, width) > DEFAULT_MAX_MEMORY


def tiled_indices(
    net: nn.Module,
    config: UNetConfig,
    image: torch.Tensor,
    device: torch.device,
    autocast: torch.dtype | None,
    name: str = "image",
) -> torch.Tensor:
    """Class indices of one prepared image in gaussian-blended tiles, as ``segment()`` makes them.

    For ``fit()``'s validation of images too big for a whole-image pass, so a huge
    validation image costs what ``segment()`` costs, and scores what it would predict.
    The caller sets eval mode and disables gradients.

    Args:
        net: the model, on ``device``.
        config: its config.
        image: (C, H, W) float32, already normalised (a ``SegmentationDataset`` item).
        device: where ``net`` runs.
        autocast: autocast dtype, or ``None`` for float32.
        name: how log messages call the image.

    Returns:
        (H, W) int64 class indices, on the CPU.
    """
    runner = _Runner(
        net=net,
        config=config,
        device=device,
        dtype=torch.float32,
        tile_size=None,
        overlap=0.25,
        tta=False,
        autocast=autocast,
        channels_last=False,
        batch_size=4,
        max_memory=DEFAULT_MAX_MEMORY,
        return_probs=False,
        progress=False,
    )
    indices, _ = runner._predict_tiled(image, name)
    return torch.from_numpy(indices.astype(np.int64))


def mask_dtype(num_classes: int) -> np.dtype[Any]:
    """The smallest unsigned dtype that holds class indices ``0 .. num_classes - 1``."""
    if num_classes <= 256:
        return np.dtype(np.uint8)
    if num_classes <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


@overload
def segment(
    model: ModelInput,
    image: ImageInput,
    *,
    tile_size: int | None = ...,
    overlap: float = ...,
    tta: bool = ...,
    amp: str | bool | None = ...,
    batch_size: int = ...,
    device: str | torch.device | None = ...,
    return_probs: Literal[False] = ...,
    max_memory: int = ...,
    progress: bool = ...,
) -> np.ndarray: ...
@overload
def segment(
    model: ModelInput,
    image: ImageInput,
    *,
    tile_size: int | None = ...,
    overlap: float = ...,
    tta: bool = ...,
    amp: str | bool | None = ...,
    batch_size: int = ...,
    device: str | torch.device | None = ...,
    return_probs: Literal[True],
    max_memory: int = ...,
    progress: bool = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def segment(
    model: ModelInput,
    image: list[_Image] | tuple[_Image, ...],
    *,
    tile_size: int | None = ...,
    overlap: float = ...,
    tta: bool = ...,
    amp: str | bool | None = ...,
    batch_size: int = ...,
    device: str | torch.device | None = ...,
    return_probs: Literal[False] = ...,
    max_memory: int = ...,
    progress: bool = ...,
) -> list[np.ndarray]: ...
@overload
def segment(
    model: ModelInput,
    image: list[_Image] | tuple[_Image, ...],
    *,
    tile_size: int | None = ...,
    overlap: float = ...,
    tta: bool = ...,
    amp: str | bool | None = ...,
    batch_size: int = ...,
    device: str | torch.device | None = ...,
    return_probs: Literal[True],
    max_memory: int = ...,
    progress: bool = ...,
) -> list[tuple[np.ndarray, np.ndarray]]: ...
@overload
def segment(
    model: ModelInput,
    image: ImageInput | Sequence[ImageInput],
    *,
    tile_size: int | None = ...,
    overlap: float = ...,
    tta: bool = ...,
    amp: str | bool | None = ...,
    batch_size: int = ...,
    device: str | torch.device | None = ...,
    return_probs: bool = ...,
    max_memory: int = ...,
    progress: bool = ...,
) -> Any: ...


def segment(
    model: ModelInput,
    image: ImageInput | Sequence[ImageInput],
    *,
    tile_size: int | None = None,
    overlap: float = 0.25,
    tta: bool = False,
    amp: str | bool | None = "auto",
    batch_size: int = 4,
    device: str | torch.device | None = None,
    return_probs: bool = False,
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: bool = True,
) -> Any:
    """Segment one image or a list of images into class-index masks.

    Each image is preprocessed exactly as in training (``imaging.prepare_image`` with the
    config's ``in_channels``, ``image_mean`` and ``image_std``): grey is repeated for RGB
    models, RGB becomes BT.601 luma for grey models, alpha is dropped, 16-bit images are
    scaled by 65535. See the module docstring for how big images are tiled.

    Args:
        model: a ``UNet``, or a local folder / Hugging Face Hub repo id loaded with
            ``UNet.from_pretrained``. It runs in eval mode under ``torch.inference_mode``;
            its train/eval mode and device are restored afterwards.
        image: a path, PIL image, numpy array (H, W) or (H, W, C), torch tensor (C, H, W),
            or a list/tuple of those. Consecutive same-size images of a list are batched.
        tile_size: force tiling with square tiles of this side (rounded down to a multiple
            of ``2**depth``). ``None``: tile only images whose whole-image pass would need
            more than ``max_memory``, with tiles of up to ``DEFAULT_TILE_SIZE``.
        overlap: fraction of a tile's side that neighbouring tiles share, in [0, 1).
        tta: average the softmax probabilities over the flips the model was trained with
            (``config.tta_flips``, recorded by ``fit()``; horizontal alone when unknown):
            two or four times the compute.
        amp: ``"auto"`` (default): bfloat16 autocast on CPUs that run it natively (AMX,
            AVX512-BF16; 2.3x faster than float32 on a 2-core Xeon, and the same ISBI test
            mIoU), float16 on CUDA, float32 elsewhere; ``"bf16"``, ``"fp16"``, or
            ``"off"`` for float32. Probabilities are float32 either way. A model already
            cast to another dtype (``model.half()``) runs in that dtype, without autocast.
        batch_size: most images (or tiles) per forward pass; lowered further to stay within
            ``max_memory``.
        device: where to run (``"cuda"``, ``"cpu"``, ...); ``None``: the model's device.
        return_probs: also return the per-class probabilities.
        max_memory: activation-memory budget of one forward pass in bytes; it decides when
            to tile and how many images or tiles go into one pass.
        progress: show a tqdm bar over a list of many images, and for tiled images with
            many tiles.

    Returns:
        For one image, an (H, W) array of class indices at the image's own size, of dtype
        ``mask_dtype(num_classes)`` (uint8 up to 256 classes). With ``return_probs=True``,
        a tuple ``(indices, probs)`` where ``probs`` is (num_classes, H, W) float32 summing
        to 1 over classes. For a list, a list of those, in order.

    Raises:
        InputError: an image cannot be read or converted (the message names it, and its
            position in a list), a bad argument (a device this machine lacks, say), or a
            model that is not a UNet.
        WeightsError: ``model`` is a folder or repo id whose checkpoint cannot be loaded
            (``ConfigError`` for an invalid ``config.json``), as ``UNet.from_pretrained``.
    """
    _check_arguments(tile_size, overlap, batch_size, max_memory)
    net, config = _resolve_model(model)
    is_list = isinstance(image, (list, tuple))
    items: Sequence[ImageInput]
    if isinstance(image, (list, tuple)):  # noqa: SIM108 (a ternary defeats mypy's narrowing)
        items = image
    else:
        items = [cast("ImageInput", image)]
    if is_list and not items:
        return []
    settings = _Settings(tile_size, overlap, tta, amp, batch_size, return_probs, max_memory)
    out = list(_stream(net, config, items, device, settings, progress, is_list=is_list))
    return out if is_list else out[0]


def segment_iter(
    model: ModelInput,
    images: Iterable[ImageInput],
    *,
    tile_size: int | None = None,
    overlap: float = 0.25,
    tta: bool = False,
    amp: str | bool | None = "auto",
    batch_size: int = 4,
    device: str | torch.device | None = None,
    return_probs: bool = False,
    max_memory: int = DEFAULT_MAX_MEMORY,
    progress: bool = True,
) -> Generator[Any, None, None]:
    """Segment images one after another, yielding each mask as soon as it is ready.

    ``segment(model, paths)`` returns every mask at once, so 10,000 slices of 512 x 512 hold
    2.6 GiB of masks (40 GiB of probabilities with ``return_probs``); ``segment_iter`` holds
    one batch. ``images`` may be any iterable, read lazily (a generator over a folder that
    is still being written, say)::

        for path, mask in zip(paths, segment_iter(model, paths)):
            save_mask(out / f"{path.stem}.png", mask, model)

    Arguments, preprocessing and results are ``segment()``'s for a list, one item at a time,
    in order. Arguments are checked (and a folder or repo id loaded) when it is called; the
    images are read as the iterator is consumed. While it runs the model is in eval mode
    (and on ``device``, channels_last); it is put back when the iterator is exhausted,
    closed, raises or is garbage collected, so use it in a ``for`` loop, or ``close()`` it.

    Raises:
        InputError: as ``segment()``, when the call's arguments are wrong or, while
            iterating, when an image cannot be read (the message gives its position,
            ``images[i]``, counted from 0; the masks before it have been yielded).
        WeightsError: ``model`` is a folder or repo id whose checkpoint cannot be loaded.
    """
    _check_arguments(tile_size, overlap, batch_size, max_memory)
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        # A path string would be iterated character by character, an array row by row.
        raise InputError(
            f"segment_iter() takes an iterable of images, got one {_describe(images)}; "
            "pass [image], or call segment() for a single image"
        )
    net, config = _resolve_model(model)
    _placement(net, device, amp)  # a bad device or amp fails here, not at the first mask
    settings = _Settings(tile_size, overlap, tta, amp, batch_size, return_probs, max_memory)
    return _stream(net, config, images, device, settings, progress, is_list=True)


def _stream(
    net: nn.Module,
    config: UNetConfig,
    images: Iterable[ImageInput],
    device: str | torch.device | None,
    settings: _Settings,
    progress: bool,
    *,
    is_list: bool,
) -> Generator[Any, None, None]:
    """Results in input order, a batch at a time; the model is prepared at the first ``next()``.

    ``is_list``: messages name an image by its position (``images[i]``).
    """
    with _inference_run(net, config, device, settings, progress) as runner:
        batches = runner._batches(images, is_list)
        total = len(images) if isinstance(images, Sized) else None
        bar = tqdm(
            total=total,
            desc="segment",
            unit="image",
            leave=False,
            disable=not progress or (total is not None and total < PROGRESS_MIN_IMAGES),
        )
        with bar:
            while True:
                # Inference mode only around the work: it is thread state, and the caller's
                # code between two masks must not run under it.
                with torch.inference_mode():
                    batch = next(batches, None)
                if batch is None:
                    return
                positions, results = batch
                bar.update(len(positions))
                for result in results:
                    yield _output(result, settings.return_probs)


def _output(result: _Result, return_probs: bool) -> Any:
    """A result as ``segment()`` returns it: the mask, or (mask, probabilities)."""
    indices, probs = result
    return (indices, probs) if return_probs else indices


@dataclass(frozen=True)
class _Settings:
    """The inference arguments ``segment()`` and ``segment_iter()`` share."""

    tile_size: int | None
    overlap: float
    tta: bool
    amp: str | bool | None
    batch_size: int
    return_probs: bool
    max_memory: int


def _placement(
    net: nn.Module, device: str | torch.device | None, amp: str | bool | None
) -> tuple[torch.device, torch.device, torch.dtype, torch.dtype | None]:
    """(the model's device, where to run, its dtype, the autocast dtype or None).

    Raises:
        InputError: a device this machine lacks, or an unknown ``amp``.
    """
    first_param = next(net.parameters(), None)
    home = first_param.device if first_param is not None else torch.device("cpu")
    target = check_device(device, InputError) if device is not None else home
    dtype = first_param.dtype if first_param is not None else torch.float32
    # Autocast serves float32 weights; a model already cast (model.half()) runs in its
    # own dtype, since bf16 autocast over fp16 BatchNorm weights is a torch error.
    autocast = autocast_dtype(amp, target, error=InputError) if dtype == torch.float32 else None
    return home, target, dtype, autocast


@contextmanager
def _inference_run(
    net: nn.Module,
    config: UNetConfig,
    device: str | torch.device | None,
    settings: _Settings,
    progress: bool,
) -> Iterator[_Runner]:
    """Put ``net`` in eval mode on the target device and layout; put it back afterwards."""
    home, target, dtype, autocast = _placement(net, device, settings.amp)
    was_training = net.training
    layout = _memory_format(net)
    # channels_last: 1.7x faster float32 and 2.2x faster bf16 convolutions on a Xeon CPU
    # (benchmarks/bench_segment.py); also what CUDA tensor cores want.
    fast_layout = target.type in ("cpu", "cuda")
    try:
        if target != home:
            net.to(target)
        if fast_layout:
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        net.eval()
        yield _Runner(
            net=net,
            config=config,
            device=target,
            dtype=dtype,
            tile_size=settings.tile_size,
            overlap=settings.overlap,
            tta=settings.tta,
            autocast=autocast,
            channels_last=fast_layout,
            batch_size=settings.batch_size,
            max_memory=settings.max_memory,
            return_probs=settings.return_probs,
            progress=progress,
        )
    finally:
        net.train(was_training)
        if fast_layout:
            net.to(memory_format=layout)  # type: ignore[call-overload]
        if target != home:
            net.to(home)


def _memory_format(net: nn.Module) -> torch.memory_format:
    """The layout of the 4-D weights, so ``segment()`` can leave the model as it was."""
    for param in net.parameters():
        # Weights with one input channel (or 1x1 kernels) are both layouts at once.
        if (
            param.dim() == 4
            and not param.is_contiguous()
            and param.is_contiguous(memory_format=torch.channels_last)
        ):
            return torch.channels_last
    return torch.contiguous_format


def _check_arguments(
    tile_size: int | None, overlap: float, batch_size: int, max_memory: int
) -> None:
    if tile_size is not None and (
        isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1
    ):
        raise InputError(f"tile_size must be a positive integer or None, got {tile_size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise InputError(f"overlap is a fraction of the tile side in [0, 1), got {overlap!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(max_memory, bool) or not isinstance(max_memory, int) or max_memory < 1:
        raise InputError(f"max_memory must be a positive number of bytes, got {max_memory!r}")


def _resolve_model(model: ModelInput) -> tuple[nn.Module, UNetConfig]:
    """A module with a ``UNetConfig`` in ``.config``; paths and repo ids are loaded."""
    if isinstance(model, (str, os.PathLike)):
        model = UNet.from_pretrained(os.fspath(model))
    config = getattr(model, "config", None)
    if not isinstance(model, nn.Module) or not isinstance(config, UNetConfig):
        raise InputError(
            f"model must be a UNet (or a folder / Hub repo id to load one), got {type(model).__name__}"
        )
    return model, config


def _describe(item: object) -> str:
    """How messages name an input: its path, or its type (and shape)."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, (np.ndarray, torch.Tensor)):
        return f"{type(item).__name__} of shape {tuple(item.shape)}"
    return type(item).__name__


def _looks_channels_first(item: ImageInput, in_channels: int) -> bool:
    """Whether a numpy image (array or ``.npy`` file) that failed looks (C, H, W)."""
    shape: tuple[int, ...] | None = None
    if isinstance(item, np.ndarray):
        shape = item.shape
    elif isinstance(item, (str, os.PathLike)) and str(item).lower().endswith(".npy"):
        try:
            shape = npy_header(Path(item))[0]
        except ImageError:
            return False
    if shape is None or len(shape) != 3:
        return False
    return shape[0] < shape[2] and (shape[0] <= 4 or shape[0] == in_channels)


@dataclass
class _Runner:
    """One ``segment()`` call's settings, and the loops that use them."""

    net: nn.Module
    config: UNetConfig
    device: torch.device
    dtype: torch.dtype
    tile_size: int | None
    overlap: float
    tta: bool
    autocast: torch.dtype | None
    channels_last: bool
    batch_size: int
    max_memory: int
    return_probs: bool
    progress: bool

    def _batches(
        self, items: Iterable[ImageInput], is_list: bool
    ) -> Iterator[tuple[list[int], list[_Result]]]:
        """Stream images: batch consecutive same-size ones, tile the big ones alone."""
        pending: list[torch.Tensor] = []
        pending_at: list[int] = []
        limit = 1
        for index, item in enumerate(items):
            try:
                x = self._load(item, f"images[{index}]: " if is_list else "")
            except InputError:
                if pending:  # segment_iter() hands out the masks before a bad image first
                    yield pending_at, self._predict(pending)
                raise
            height, width = x.shape[-2:]
            whole = estimate_memory(self.config, height, width)
            if self.tile_size is not None or whole > self.max_memory:
                if pending:
                    yield pending_at, self._predict(pending)
                    pending, pending_at = [], []
                name = f"images[{index}] ({_describe(item)})" if is_list else _describe(item)
                yield [index], [self._predict_tiled(x, name)]
                continue
            if pending and (pending[0].shape != x.shape or len(pending) >= limit):
                yield pending_at, self._predict(pending)
                pending, pending_at = [], []
            if not pending:
                limit = max(1, min(self.batch_size, self.max_memory // max(whole, 1)))
            pending.append(x)
            pending_at.append(index)
        if pending:
            yield pending_at, self._predict(pending)

    def _load(self, item: ImageInput, prefix: str) -> torch.Tensor:
        """Preprocess one image; errors name it (path or type) after ``prefix``."""
        name = _describe(item)
        c = self.config
        try:
            return prepare_image(item, c.in_channels, c.image_mean, c.image_std, name=name)
        except ImageError as err:
            hint = ""
            if _looks_channels_first(item, c.in_channels):
                hint = "; numpy images are (H, W, C): this one looks channels-first, use array.transpose(1, 2, 0)"
            raise InputError(f"{prefix}{err}{hint}") from None
        except OSError as err:  # I/O failures that imaging did not classify
            raise InputError(f"{prefix}{name}: cannot be read ({err})") from None

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) on device -> (N, K, h, w) float32 softmax, flip-averaged with TTA."""
        if not self.tta:
            return F.softmax(self._forward(x), dim=1)
        mirrorings = tta_flip_dims(self.config)
        total = F.softmax(self._forward(x), dim=1)
        for dims in mirrorings[1:]:
            flipped = F.softmax(self._forward(x.flip(dims)), dim=1)
            total.add_(flipped.flip(dims))
        return total.div_(len(mirrorings))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's float32 logits, under autocast when ``amp`` asked for it."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, dtype=self.autocast or torch.float32, enabled=bool(self.autocast)
        ):
            logits: torch.Tensor = self.net(x)
        return logits.float()

    def _to_indices(self, indices: torch.Tensor) -> np.ndarray:
        """int64 argmax on device -> numpy in the small dtype, converted once."""
        out_dtype = mask_dtype(self.config.num_classes)
        if out_dtype == np.uint8:
            return indices.to(torch.uint8).cpu().numpy()
        return indices.to(torch.int32).cpu().numpy().astype(out_dtype)

    def _predict(self, images: list[torch.Tensor]) -> list[_Result]:
        """Whole same-size images in one pass."""
        x = images[0][None] if len(images) == 1 else torch.stack(images)
        x = x.to(self.device, self.dtype, non_blocking=True)  # (N, C, H, W)
        if self.tta or self.return_probs:
            probs = self._probs(x)  # (N, K, H, W)
            indices = self._to_indices(class_argmax(probs, dim=1))
            probs_np = probs.contiguous().cpu().numpy() if self.return_probs else None
        else:  # softmax keeps the order, so argmax the logits directly
            indices = self._to_indices(class_argmax(self._forward(x), dim=1))
            probs_np = None
        return [
            (indices[i], probs_np[i] if probs_np is not None else None) for i in range(len(images))
        ]

    def _tile_side(self) -> int:
        multiple = self.config.size_multiple
        if self.tile_size is not None:
            side = self.tile_size
        else:
            per_pixel = estimate_memory(self.config, 1, 1)
            side = min(DEFAULT_TILE_SIZE, math.isqrt(max(self.max_memory // per_pixel, 1)))
        return max(multiple, side // multiple * multiple)

    def _predict_tiled(self, x: torch.Tensor, name: str) -> _Result:
        """One (C, H, W) image in gaussian-blended tiles, accumulated row band by row band."""
        num_classes = self.config.num_classes
        height, width = x.shape[-2:]
        side = self._tile_side()
        per_tile = estimate_memory(self.config, min(side, height), min(side, width))
        per_batch = max(1, min(self.batch_size, self.max_memory // per_tile))
        plan = plan_tiles(
            height, width, side, self.overlap, self.config.size_multiple, batch=per_batch
        )
        th, tw = plan.tile
        logger.info(
            "%s: %dx%d in %d tiles of %dx%d (overlap %.2f, %d per batch)",
            name,
            width,
            height,
            len(plan.tiles),
            tw,
            th,
            self.overlap,
            plan.batch,
        )
        weight = gaussian_weights(th, tw, len(plan.ys) > 1, len(plan.xs) > 1).to(self.device)
        acc = torch.zeros(num_classes, plan.band_height, width, device=self.device)
        wsum = torch.zeros(plan.band_height, width, device=self.device)
        indices = np.empty((height, width), dtype=mask_dtype(num_classes))
        probs_out = (
            np.empty((num_classes, height, width), dtype=np.float32) if self.return_probs else None
        )
        band_top, next_row = 0, 0  # first unfinished image row, and its tile row
        bar = tqdm(
            total=len(plan.tiles),
            desc=f"segment {name}",
            unit="tile",
            leave=False,
            disable=not self.progress or len(plan.tiles) < PROGRESS_MIN_TILES,
        )
        try:
            for chunk in plan.batches():
                batch = torch.stack([x[:, y : y + th, xx : xx + tw] for _, y, xx in chunk])
                probs = self._probs(batch.to(self.device, self.dtype, non_blocking=True))
                probs.mul_(weight)
                for (_, y, xx), tile_probs in zip(chunk, probs, strict=True):
                    rows = slice(y - band_top, y - band_top + th)
                    acc[:, rows, xx : xx + tw] += tile_probs
                    wsum[rows, xx : xx + tw] += weight
                bar.update(len(chunk))
                done = plan.completed_row(chunk[-1])
                if done < next_row:
                    continue
                end = plan.ys[done + 1] if done + 1 < len(plan.ys) else height
                n = end - band_top
                # Weights are positive, so the argmax of the weighted sum is the blended argmax.
                indices[band_top:end] = self._to_indices(class_argmax(acc[:, :n], dim=0))
                if probs_out is not None:
                    probs_out[:, band_top:end] = (acc[:, :n] / wsum[:n]).cpu().numpy()
                _shift_up(acc, n)
                _shift_up(wsum, n)
                band_top, next_row = end, done + 1
        finally:
            bar.close()
        return indices, probs_out


def _shift_up(band: torch.Tensor, n: int) -> None:
    """Drop the first ``n`` rows (dim -2) of a band buffer and zero the freed rows at its end."""
    rest = band.shape[-2] - n
    if rest > 0:
        band[..., :rest, :] = band[..., n:, :].clone()
    band[..., max(rest, 0) :, :] = 0


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image go and in which batches they run.

    Attributes:
        tile: (height, width) of every tile.
        ys: top of each tile row, increasing.
        xs: left of each tile column, increasing.
        batch: tiles per forward pass.
        tiles: (row index, top, left) of each tile, row by row.
        band_height: rows the accumulation band needs (one tile row plus what a batch spans).
    """

    tile: tuple[int, int]
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    batch: int
    tiles: tuple[tuple[int, int, int], ...]
    band_height: int

    def batches(self) -> Iterator[tuple[tuple[int, int, int], ...]]:
        for start in range(0, len(self.tiles), self.batch):
            yield self.tiles[start : start + self.batch]

    def completed_row(self, last: tuple[int, int, int]) -> int:
        """Index of the last tile row finished once tile ``last`` has run."""
        row, _, left = last
        return row if left == self.xs[-1] else row - 1


def _positions(size: int, tile: int, step: int) -> tuple[int, ...]:
    # Interior starts are multiples of step (itself a multiple of 2**depth); the last tile
    # is shifted inside the image so that it ends on the edge.
    if size <= tile:
        return (0,)
    starts = list(range(0, size - tile, step))
    return (*starts, size - tile)


def plan_tiles(
    height: int, width: int, tile: int, overlap: float, multiple: int, *, batch: int
) -> TilePlan:
    """Lay out tiles of side ``tile`` over a ``height`` x ``width`` image.

    Args:
        height: image height.
        width: image width.
        tile: tile side, a multiple of ``multiple``; sides longer than the image shrink to it.
        overlap: fraction of the side neighbouring tiles share, in [0, 1).
        multiple: ``2**depth``; tile starts (except a shifted last one) are multiples of it.
        batch: tiles per forward pass.

    Returns:
        The plan; every pixel is covered by at least one tile.
    """
    step = max(multiple, int(tile * (1 - overlap)) // multiple * multiple)
    th, tw = min(tile, height), min(tile, width)
    ys, xs = _positions(height, tile, step), _positions(width, tile, step)
    tiles = tuple((r, y, x) for r, y in enumerate(ys) for x in xs)
    plan = TilePlan((th, tw), ys, xs, batch, tiles, th)
    band = max(ys[chunk[-1][0]] + th - ys[chunk[0][0]] for chunk in plan.batches())
    return TilePlan((th, tw), ys, xs, batch, tiles, band)


def gaussian_weights(
    height: int, width: int, vary_y: bool = True, vary_x: bool = True
) -> torch.Tensor:
    """(height, width) float32 blending weights: a gaussian with sigma = side / 8, peak 1.

    An axis along which only one tile runs gets constant weight (``vary_y``/``vary_x``
    False): it would cancel out in the normalisation anyway.
    """

    def axis(n: int, vary: bool) -> torch.Tensor:
        if not vary:
            return torch.ones(n)
        centre, sigma = (n - 1) / 2, n / 8
        return torch.exp(-((torch.arange(n, dtype=torch.float32) - centre) ** 2) / (2 * sigma**2))

    weights = axis(height, vary_y)[:, None] * axis(width, vary_x)[None, :]
    # Keep the corners strictly positive so every pixel has a non-zero total weight.
    return weights.clamp_min_(1e-6)
