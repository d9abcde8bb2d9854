"""Joint training augmentation: one random draw applied identically to image and mask.

``Augment`` crops (or pads) to a patch, with foreground oversampling, rescales (bilinear
for the image; the mask takes, per pixel, the label whose interpolated indicator is
largest, so no new label values appear), flips, rotates by multiples of 90 degrees and
jitters intensity. Everything is drawn from the ``numpy.random.Generator`` it is given,
so ``ds[(i, seed)]`` is reproducible in any worker.

It works in two steps so that ``SegmentationDataset`` can crop the raw, still-undecoded
array first and convert and normalise only the crop: ``plan`` draws the crop region,
``finish`` does the rest on the cropped tensors. ``Augment(image, mask, rng)`` runs both
on whole tensors, with the same random draws, so the two paths give the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from ._utils import is_integer, is_number
from .errors import ConfigError, DatasetError

__all__ = [
    "Augment",
    "CropPlan",
    "Foreground",
    "crop_with_padding",
    "draw_pixel",
    "foreground_classes",
]

#: Random probes tried before a scan when looking for a pixel of a class (``draw_pixel``).
_PROBES = 1024


class CropPlan(NamedTuple):
    """A source region to crop, in pixels of the full image; it may extend past the edges."""

    top: int
    left: int
    height: int
    width: int


class Foreground(NamedTuple):
    """Where a crop may be centred: a mask and the foreground classes it holds."""

    mask: np.ndarray  # (H, W) class indices
    classes: np.ndarray  # (k,) the foreground classes in ``mask``, ascending


def foreground_classes(mask: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """The foreground classes in ``mask``, ascending: any but 0 and ``ignore_index``, as in nnU-Net.

    Args:
        mask: (H, W) class indices.
        ignore_index: label to skip, or ``None``.

    Returns:
        (k,) classes; k may be 0.
    """
    present = np.unique(mask)
    keep = present != 0
    if ignore_index is not None:
        keep &= present != ignore_index
    out: np.ndarray = present[keep]
    return out


def draw_pixel(mask: np.ndarray, cls: int, rng: np.random.Generator) -> tuple[int, int] | None:
    """A pixel of class ``cls`` drawn uniformly from all of the class's pixels.

    Nothing is stored per image: random probes find a pixel of a class that covers more
    than about 0.5% of the mask in microseconds, and a scan (about 1 ms at 2048 x 2048)
    finds the rarer ones. Every pixel of the class is equally likely either way, since a
    uniformly drawn probe that lands on the class is a uniform draw among its pixels.

    Args:
        mask: (H, W) class indices.
        cls: the class.
        rng: the random source.

    Returns:
        (row, col), or ``None`` if the mask holds no pixel of ``cls``.
    """
    flat = mask.reshape(-1)
    probes = rng.integers(0, flat.size, _PROBES)
    hits = probes[flat[probes] == cls]
    if len(hits):
        index = int(hits[0])
    else:
        pixels = np.flatnonzero(flat == cls)
        if not len(pixels):
            return None
        index = int(pixels[rng.integers(len(pixels))])
    return divmod(index, int(mask.shape[1]))


def crop_with_padding(
    array: Any, plan: CropPlan, height: int, width: int
) -> tuple[Any, tuple[int, int, int, int]]:
    """Cut the part of ``plan`` inside an image of ``height`` x ``width``.

    Args:
        array: (H, W, ...) numpy array or (..., H, W) tensor (tensors are cut on the last
            two axes, arrays on the first two).
        plan: the region.
        height: the image's height.
        width: the image's width.

    Returns:
        The cut and the (top, bottom, left, right) padding that restores the plan's size.
    """
    y0, x0 = max(plan.top, 0), max(plan.left, 0)
    y1, x1 = min(plan.top + plan.height, height), min(plan.left + plan.width, width)
    tensor = isinstance(array, torch.Tensor)
    cut = array[..., y0:y1, x0:x1] if tensor else array[y0:y1, x0:x1]
    pads = (y0 - plan.top, plan.top + plan.height - y1, x0 - plan.left, plan.left + plan.width - x1)
    return cut, pads


def _check(name: str, value: object, low: float, high: float) -> float:
    if not is_number(value):
        raise ConfigError(f"Augment: {name} must be a number, got {value!r}")
    number = float(value)
    if not low <= number <= high:
        raise ConfigError(f"Augment: {name} must be in [{low}, {high}], got {value}")
    return number


def _is_pair(value: object) -> bool:
    return isinstance(value, (tuple, list))


@dataclass(frozen=True)
class Augment:
    """Random crop/pad, scale, flips, 90-degree rotations and intensity jitter.

    The defaults crop, mirror left-right and jitter intensity; they keep the images'
    up-down orientation and pixel scale, which labels often depend on (skies are at the
    top; outline labels are drawn with a brush of fixed width). Turn on ``vflip``,
    ``rotate90`` and ``scale`` for data without an up or a fixed scale (microscopy, aerial).

    Args:
        patch_size: output (height, width), or one int for a square; ``None`` keeps the
            whole image (and skips scaling).
        flip: random horizontal (left-right) flips.
        vflip: random vertical (up-down) flips.
        rotate90: random multiples of 90 degrees (square patches only).
        scale: (low, high) zoom factor, drawn log-uniformly; ``None`` for none. The
            source region is ``patch / factor`` and is resized to the patch (the mask
            so that its edges follow the image's, see ``_resample_labels``).
        brightness: add U(-b, b) to the normalised image (about b standard deviations).
        contrast: scale deviations from each channel's mean by 1 + U(-c, c).
        gamma: apply ``x ** (1 + U(-g, g))`` to each channel min-max scaled to [0, 1].
        foreground_prob: chance of centring the crop on a foreground pixel (class > 0):
            a class drawn uniformly among the image's foreground classes, then one of its
            pixels, so rare classes (poles, signs, lesions) are seen often enough.
        elastic: standard deviation, in pixels, of a smooth random displacement field
            (control points every ``elastic_spacing`` pixels, interpolated bilinearly), as
            the U-Net paper used to learn from few images; 0 turns it off.
        elastic_spacing: distance in pixels between the displacement field's control points.
        ignore_index: label for padded mask pixels; ``SegmentationDataset.with_augment``
            fills it in from the data set.

    Padding (when the image is smaller than the patch, or the crop runs past an edge):
    the normalised image is padded with 0 (the data set mean); the mask with
    ``ignore_index`` when set (losses then skip padding), else with class 0.

    Call it as ``augment(image, mask, rng)`` with a (C, H, W) float tensor, an (H, W)
    int64 tensor and a ``numpy.random.Generator``; it returns the augmented pair.
    """

    patch_size: int | tuple[int, int] | None = 256
    flip: bool = True
    vflip: bool = False
    rotate90: bool = False
    scale: tuple[float, float] | None = None
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.1
    foreground_prob: float = 0.33
    elastic: float = 0.0
    elastic_spacing: int = 64
    ignore_index: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        size: Any = self.patch_size
        if size is not None:
            pair = (size, size) if is_integer(size) else tuple(size) if _is_pair(size) else ()
            if len(pair) != 2 or not all(is_integer(s) and s > 0 for s in pair):
                raise ConfigError(
                    f"Augment: patch_size must be a positive int or (h, w), got {size!r}"
                )
            object.__setattr__(self, "patch_size", (int(pair[0]), int(pair[1])))
        if self.scale is not None:
            scale = tuple(self.scale) if _is_pair(self.scale) else ()
            if len(scale) != 2 or not all(is_number(s) for s in scale):
                raise ConfigError(
                    f"Augment: scale must be (low, high) zoom factors or None, got {self.scale!r}"
                )
            low, high = float(scale[0]), float(scale[1])
            if not 0 < low <= high <= 10:
                raise ConfigError(
                    f"Augment: scale must be (low, high) with 0 < low <= high <= 10, got {self.scale!r}"
                )
            object.__setattr__(self, "scale", (low, high))
        for name in ("flip", "vflip", "rotate90"):
            # A truthy string ("no") would silently switch the transform on.
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"Augment: {name} must be True or False, got {getattr(self, name)!r}"
                )
        for name in ("brightness", "contrast", "gamma"):
            _check(name, getattr(self, name), 0.0, 0.9)
        _check("foreground_prob", self.foreground_prob, 0.0, 1.0)
        _check("elastic", self.elastic, 0.0, 100.0)
        if (
            isinstance(self.elastic_spacing, bool)
            or not isinstance(self.elastic_spacing, int)
            or self.elastic_spacing < 4
        ):
            raise ConfigError(
                f"Augment: elastic_spacing must be an int >= 4 pixels, got {self.elastic_spacing!r}"
            )
        if self.ignore_index is not None and (
            isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int)
        ):
            raise ConfigError(
                f"Augment: ignore_index must be an int or None, got {self.ignore_index!r}"
            )

    @property
    def pad_label(self) -> int:
        """The mask value used for padding."""
        return self.ignore_index if self.ignore_index is not None else 0

    def plan(
        self,
        height: int,
        width: int,
        rng: np.random.Generator,
        foreground: Foreground | None = None,
    ) -> CropPlan:
        """Draw the source region to crop from an image of ``height`` x ``width``.

        Args:
            height: image height.
            width: image width.
            rng: the random source.
            foreground: the mask and its foreground classes, for crops centred on one
                (``foreground_prob``); ``None`` for none.

        Returns:
            The region; the whole image when ``patch_size`` is ``None``.
        """
        if self.patch_size is None:
            return CropPlan(0, 0, height, width)
        assert not isinstance(self.patch_size, int)  # normalised in __post_init__
        out_h, out_w = self.patch_size
        factor = 1.0
        if self.scale is not None:
            low, high = self.scale
            factor = math.exp(rng.uniform(math.log(low), math.log(high)))
        region_h = max(1, round(out_h / factor))
        region_w = max(1, round(out_w / factor))
        lo_y, hi_y = sorted((0, height - region_h))
        lo_x, hi_x = sorted((0, width - region_w))
        use_fg = self.foreground_prob > 0 and rng.random() < self.foreground_prob
        centre = None
        if use_fg and foreground is not None and len(foreground.classes):
            # nnU-Net's rule: a class drawn uniformly among those present, then one of its
            # pixels, so rare classes are centred as often as common ones.
            cls = foreground.classes[int(rng.integers(len(foreground.classes)))]
            centre = draw_pixel(foreground.mask, int(cls), rng)
        if centre is not None:
            top = int(np.clip(centre[0] - region_h // 2, lo_y, hi_y))
            left = int(np.clip(centre[1] - region_w // 2, lo_x, hi_x))
        else:
            top = int(rng.integers(lo_y, hi_y + 1))
            left = int(rng.integers(lo_x, hi_x + 1))
        return CropPlan(top, left, region_h, region_w)

    def finish(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        pads: tuple[int, int, int, int],
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad, resize, flip, rotate and jitter an already cut region.

        The work is done in numpy: single-threaded, so a patch costs the same on a busy
        2-core machine as on an idle one (torch's intra-op threads only add overhead at
        this size).

        Args:
            image: (C, h, w) float32, normalised.
            mask: (h, w) int64.
            pads: (top, bottom, left, right) padding from ``crop_with_padding``.
            rng: the random source (after ``plan``).

        Returns:
            (C, P_h, P_w) float32 image and (P_h, P_w) int64 mask.
        """
        img = image.detach().cpu().numpy()
        lab = mask.detach().cpu().numpy()
        if any(pads):
            top, bottom, left, right = pads
            img = np.pad(img, ((0, 0), (top, bottom), (left, right)))
            lab = np.pad(lab, ((top, bottom), (left, right)), constant_values=self.pad_label)
        size = self.patch_size
        assert not isinstance(size, int)  # normalised in __post_init__
        resize_to = size if size is not None and lab.shape != size else None
        values = None
        if resize_to is not None or self.elastic > 0:
            # Resampled, the mask travels as one indicator plane per label (see
            # _resample_labels) and becomes labels once, at the end: rounding after the
            # zoom and again after the elastic warp would move edges off the image's.
            values = np.unique(lab)
            lab = (lab[None] == values[:, None, None]).astype(np.float32)  # (L, h, w)
        if resize_to is not None:
            img, lab = _resize(img, *resize_to), _resize(lab, *resize_to)
        if self.flip and rng.random() < 0.5:
            img, lab = img[..., ::-1], lab[..., ::-1]
        if self.vflip and rng.random() < 0.5:
            img, lab = img[..., ::-1, :], lab[..., ::-1, :]
        if self.rotate90 and lab.shape[-2] == lab.shape[-1]:
            turns = int(rng.integers(4))
            img, lab = np.rot90(img, turns, axes=(-2, -1)), np.rot90(lab, turns, axes=(-2, -1))
        if self.elastic > 0:
            img, lab = _deform([img, lab], self.elastic, self.elastic_spacing, rng)
        if values is not None:
            lab = _resample_labels(values, lab)
        # A copy: the jitter works in place, and img may still be the caller's tensor's memory.
        img = self._jitter(np.array(img, dtype=np.float32, order="C"), rng)
        return torch.from_numpy(img), torch.from_numpy(np.ascontiguousarray(lab, dtype=np.int64))

    def _jitter(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # In place on the (C, h, w) float32 copy made by finish().
        if self.brightness:
            image += np.float32(rng.uniform(-self.brightness, self.brightness))
        if self.contrast:
            factor = np.float32(1.0 + rng.uniform(-self.contrast, self.contrast))
            mean = image.mean(axis=(1, 2), keepdims=True, dtype=np.float32)
            image -= mean
            image *= factor
            image += mean
        if self.gamma:
            exponent = np.float32(1.0 + rng.uniform(-self.gamma, self.gamma))
            low = image.min(axis=(1, 2), keepdims=True)
            span = np.maximum(image.max(axis=(1, 2), keepdims=True) - low, np.float32(1e-6))
            image -= low
            image /= span
            np.power(image, exponent, out=image)
            image *= span
            image += low
        return image

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a whole image and its mask with one random draw.

        Args:
            image: (C, H, W) float tensor, normalised.
            mask: (H, W) int64 class indices.
            rng: the random source; the same state gives the same result.

        Returns:
            (C, P_h, P_w) float32 image and (P_h, P_w) int64 mask, ``P`` the patch size
            (the input's own size when ``patch_size`` is ``None``).

        Raises:
            DatasetError: the inputs are not tensors of those shapes, or ``rng`` is not a
                ``numpy.random.Generator``.
        """
        if not (isinstance(image, torch.Tensor) and isinstance(mask, torch.Tensor)):
            raise DatasetError(
                f"Augment takes torch tensors, got {type(image).__name__} and "
                f"{type(mask).__name__}; convert numpy arrays with torch.from_numpy"
            )
        if image.dim() != 3 or mask.dim() != 2 or image.shape[1:] != mask.shape:
            raise DatasetError(
                f"Augment takes an image (C, H, W) and its mask (H, W), got "
                f"{tuple(image.shape)} and {tuple(mask.shape)}"
            )
        if not isinstance(rng, np.random.Generator):
            raise DatasetError(
                f"Augment takes rng=numpy.random.default_rng(seed), got {type(rng).__name__}"
            )
        height, width = mask.shape[-2:]
        foreground = None
        if self.foreground_prob > 0:
            labels = mask.detach().cpu().numpy()
            foreground = Foreground(labels, foreground_classes(labels, self.ignore_index))
        plan = self.plan(int(height), int(width), rng, foreground)
        image_cut, pads = crop_with_padding(image, plan, int(height), int(width))
        mask_cut, _ = crop_with_padding(mask, plan, int(height), int(width))
        return self.finish(image_cut, mask_cut, pads, rng)


def _resize(planes: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize (N, h, w) planes bilinearly, with half-pixel centres as torch's ``align_corners=False``."""
    rows0, rows1, wy = _linear_taps(planes.shape[1], out_h)
    cols0, cols1, wx = _linear_taps(planes.shape[2], out_w)
    wy = wy[:, None]
    tall = planes[:, rows0] * (1 - wy) + planes[:, rows1] * wy
    out: np.ndarray = tall[:, :, cols0] * (1 - wx) + tall[:, :, cols1] * wx
    return out.astype(np.float32, copy=False)


def _resample_labels(values: np.ndarray, indicators: np.ndarray) -> np.ndarray:
    """Labels from resampled (L, h, w) indicator planes of the label ``values``.

    Each output pixel takes the label whose interpolated indicator is largest.
    Nearest-neighbour sampling would move every label edge by up to half a pixel at random
    relative to the bilinearly resampled image; on thin structures (membranes, poles) that
    jitter is label noise the model cannot fit. Interpolating each label's indicator keeps
    edges where the image has them, and the argmax still yields only existing labels.
    """
    labels: np.ndarray = values[indicators.argmax(axis=0)]
    return labels


def _linear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    source = (np.arange(size_out, dtype=np.float32) + 0.5) * np.float32(size_in / size_out) - 0.5
    source = np.clip(source, 0, size_in - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (source - low).astype(np.float32)


def _deform(
    planes: list[np.ndarray], sigma: float, spacing: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Warp (N, h, w) planes (an image, a mask's indicators) alike by a smooth random field.

    Displacements are drawn at control points ``spacing`` pixels apart and interpolated
    bilinearly, so neighbouring pixels move together and thin structures stay connected.
    Samples that fall outside take the nearest edge pixel.
    """
    height, width = planes[0].shape[-2:]
    grid_h, grid_w = height // spacing + 2, width // spacing + 2
    coarse = rng.normal(0.0, sigma, size=(2, grid_h, grid_w)).astype(np.float32)
    shift = _resize(coarse, height, width)  # (2, h, w) pixels
    src_y = np.clip(np.arange(height, dtype=np.float32)[:, None] + shift[0], 0, height - 1)
    src_x = np.clip(np.arange(width, dtype=np.float32)[None, :] + shift[1], 0, width - 1)
    y0 = np.floor(src_y).astype(np.int64)
    x0 = np.floor(src_x).astype(np.int64)
    y1 = np.minimum(y0 + 1, height - 1)
    x1 = np.minimum(x0 + 1, width - 1)
    fy, fx = src_y - y0, src_x - x0

    def bilinear(array: np.ndarray) -> np.ndarray:  # (N, h, w) sampled at (src_y, src_x)
        out: np.ndarray = (
            array[:, y0, x0] * ((1 - fy) * (1 - fx))
            + array[:, y0, x1] * ((1 - fy) * fx)
            + array[:, y1, x0] * (fy * (1 - fx))
            + array[:, y1, x1] * (fy * fx)
        )
        return out.astype(np.float32, copy=False)

    return [bilinear(array) for array in planes]
