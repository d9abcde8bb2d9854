"""Turn class-index masks back into what users look at: their own mask values, colours, overlays.

The config (``model.config``) remembers how the training masks encoded classes
(``mask_encoding``, ``mask_values``, ``class_colors``), so a prediction can be written in the
same encoding the user drew their masks in:

* ``binary`` / ``grey``: a greyscale PNG holding the original values (0/255 stays 0/255);
* ``color``: a palette PNG whose pixels are class indices and whose palette holds the
  original RGB colours (it looks like the user's masks and reads back as indices);
* ``palette``: a palette PNG holding the original palette indices and colours;
* ``index`` or unknown: a greyscale PNG holding the class indices themselves.

``colorize`` and ``overlay`` make pictures: the config's ``class_colors`` when it has them,
else a fixed palette of distinct colours (``default_palette``: class 0 black).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, Any, cast

import numpy as np
import torch
from PIL import Image, ImageOps

from ._utils import atomic_write, is_number
from .config import UNetConfig
from .errors import ImageError, InputError
from .imaging import _to_array_mode, convert_channels, read_image, to_unit_range
from .infer import ImageInput

__all__ = [
    "colorize",
    "default_palette",
    "overlay",
    "save_mask",
    "save_overlay",
    "to_mask_values",
]


def _config(config: UNetConfig | torch.nn.Module) -> UNetConfig:
    found = config if isinstance(config, UNetConfig) else getattr(config, "config", None)
    if not isinstance(found, UNetConfig):
        raise InputError(f"expected a UNetConfig or a UNet, got {type(config).__name__}")
    return found


def _check_indices(indices: np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """(H, W) integer class indices as numpy, each in ``0 .. num_classes - 1``."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.size == 0:
        raise InputError(
            f"expected a non-empty (H, W) mask of class indices, got shape {indices.shape}"
        )
    if not np.issubdtype(indices.dtype, np.integer):
        raise InputError(f"class indices must be integers, got dtype {indices.dtype}")
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= num_classes:
        raise InputError(
            f"class indices must be in 0..{num_classes - 1} for a {num_classes}-class model, "
            f"found values {low}..{high}"
        )
    return indices


def default_palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 distinct colours: the PASCAL VOC palette (class 0 black).

    Bits of the class index are spread over R, G and B from the high bit down, so
    neighbouring classes get very different colours; the eight rounds take 24 bits, so
    every class gets its own colour (class 256 is not class 0's black again).
    """
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    code = np.arange(num_classes)
    for shift in range(7, -1, -1):
        for channel in range(3):
            palette[:, channel] |= (((code >> channel) & 1) << shift).astype(np.uint8)
        code >>= 3
    return palette


def _colors(config: UNetConfig) -> np.ndarray:
    if config.class_colors is not None:
        return np.asarray(config.class_colors, dtype=np.uint8)
    return default_palette(config.num_classes)


def to_mask_values(
    indices: np.ndarray | torch.Tensor, config: UNetConfig | torch.nn.Module
) -> np.ndarray:
    """Map class indices to the mask values the training masks used.

    Args:
        indices: (H, W) class indices, as ``segment()`` returns them.
        config: the model's config (or the model).

    Returns:
        (H, W) array of ``config.mask_values[index]`` (grey levels such as 0/255, or
        palette indices) in the smallest unsigned dtype that holds them; the indices
        themselves when the config records no ``mask_values``.

    Raises:
        InputError: not a 2-D integer array, or indices outside the model's classes.
    """
    cfg = _config(config)
    indices = _check_indices(indices, cfg.num_classes)
    values = cfg.mask_values if cfg.mask_values is not None else tuple(range(cfg.num_classes))
    top = max(values)
    dtype = np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32
    mapped: np.ndarray = np.asarray(values, dtype=dtype)[indices]
    return mapped


def colorize(
    indices: np.ndarray | torch.Tensor, config: UNetConfig | torch.nn.Module
) -> np.ndarray:
    """Paint each class in its colour.

    Args:
        indices: (H, W) class indices.
        config: the model's config (or the model); its ``class_colors`` are used when set,
            otherwise ``default_palette``.

    Returns:
        (H, W, 3) uint8 RGB image.

    Raises:
        InputError: not a 2-D integer array, or indices outside the model's classes.
    """
    cfg = _config(config)
    indices = _check_indices(indices, cfg.num_classes)
    painted: np.ndarray = _colors(cfg)[indices]
    return painted


def _color_table(config: UNetConfig, entries: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """Palette entry -> RGB colour of the class at the same position in ``entries``."""
    colors = _colors(config).tolist()
    return {entry: (colors[i][0], colors[i][1], colors[i][2]) for i, entry in enumerate(entries)}


def _palette_image(pixels: np.ndarray, colors: dict[int, tuple[int, int, int]]) -> Image.Image:
    """Mode "P" image of uint8 ``pixels`` whose palette maps entry -> colour."""
    palette = default_palette(256)
    for entry, color in colors.items():
        palette[entry] = color
    image = Image.fromarray(pixels.astype(np.uint8, copy=False))  # mode "L"
    image.putpalette(palette.ravel().tolist())  # makes it "P", pixels become palette entries
    return image


def mask_image(
    indices: np.ndarray | torch.Tensor, config: UNetConfig | torch.nn.Module
) -> Image.Image:
    """The PIL image ``save_mask`` writes: the prediction in the training masks' encoding.

    See the module docstring for the image mode chosen per ``mask_encoding``.
    """
    cfg = _config(config)
    indices = _check_indices(indices, cfg.num_classes)
    encoding = cfg.mask_encoding
    k = cfg.num_classes
    if encoding == "color" and k <= 256:
        return _palette_image(indices, _color_table(cfg, range(k)))
    if encoding == "color":  # too many classes for a palette: plain RGB
        return Image.fromarray(_colors(cfg)[indices])
    if encoding == "palette" and max(cfg.mask_values or (k - 1,)) <= 255:
        values = to_mask_values(indices, cfg)
        entries = cfg.mask_values if cfg.mask_values is not None else tuple(range(k))
        return _palette_image(values, _color_table(cfg, entries))
    values = to_mask_values(indices, cfg) if encoding in ("binary", "grey", "palette") else indices
    if int(values.max(initial=0)) <= 255:
        return Image.fromarray(values.astype(np.uint8, copy=False))  # mode "L"
    if int(values.max()) <= 65535:
        return Image.fromarray(values.astype(np.uint16, copy=False))  # mode "I;16"
    raise InputError(f"mask values up to {int(values.max())} do not fit a 16-bit PNG")


def save_mask(
    path: str | os.PathLike[str],
    indices: np.ndarray | torch.Tensor,
    config: UNetConfig | torch.nn.Module,
) -> None:
    """Write a prediction as a PNG in the encoding of the training masks (atomically).

    Binary/grey configs give a greyscale PNG of the original values (0/255 stays 0/255);
    colour and palette configs a palette PNG with the original colours; otherwise a
    greyscale PNG of class indices. The file is PNG whatever the suffix.

    Args:
        path: destination file; its folder is created.
        indices: (H, W) class indices, as ``segment()`` returns them.
        config: the model's config (or the model).

    Raises:
        InputError: bad indices.
        OSError: the file cannot be written (any previous file stays intact).
    """
    image = mask_image(indices, config)
    with atomic_write(path, "wb") as handle:
        image.save(cast("IO[bytes]", handle), format="PNG")


def _display_rgb(image: ImageInput) -> np.ndarray:
    """Any image input -> (H, W, 3) float32 in [0, 1] for display."""
    try:
        if isinstance(image, (str, os.PathLike)):
            array: Any = read_image(image)
        elif isinstance(image, Image.Image):
            # As segment() reads it: upright per EXIF (else the mask does not line up), and
            # 16-bit/float modes kept (convert("RGB") would clip them to white or black).
            array = np.asarray(_to_array_mode(ImageOps.exif_transpose(image)))
        elif isinstance(image, torch.Tensor):
            tensor = (image[None] if image.dim() == 2 else image).detach().cpu()
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
                tensor = tensor.float()
            array = tensor.permute(1, 2, 0).numpy()
        else:
            array = np.asarray(image)
        unit = to_unit_range(array)
        channels = unit.shape[2] if unit.ndim == 3 else 1
        if channels not in (1, 2, 3, 4):  # multispectral: show the first channel
            unit = unit[:, :, :1]
        unit = convert_channels(unit, 3, name="image")
    except ImageError as err:
        raise InputError(f"cannot show the image: {err}") from None
    low, high = float(unit.min()), float(unit.max())
    if low < 0 or high > 1:  # float images in their own scale: stretch for display
        unit = (unit - low) / max(high - low, 1e-12)
    return unit


def overlay(
    image: ImageInput,
    indices: np.ndarray | torch.Tensor,
    config: UNetConfig | torch.nn.Module,
    alpha: float = 0.5,
    *,
    background: int | None = 0,
) -> Image.Image:
    """Blend the class colours over the image.

    Args:
        image: the segmented image (path, PIL image, array or tensor, as for ``segment()``).
        indices: (H, W) class indices of the same height and width.
        config: the model's config (or the model), for the colours.
        alpha: opacity of the colours, in [0, 1].
        background: class left untinted (``None``: tint every class).

    Returns:
        RGB PIL image of the image's size.

    Raises:
        InputError: unreadable image, bad indices, sizes that differ, or alpha out of range.
    """
    if not is_number(alpha) or not 0 <= alpha <= 1:
        raise InputError(f"alpha must be in [0, 1], got {alpha!r}")
    cfg = _config(config)
    indices = _check_indices(indices, cfg.num_classes)
    rgb = _display_rgb(image)
    if rgb.shape[:2] != indices.shape:
        raise InputError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]} but the mask is "
            f"{indices.shape[1]}x{indices.shape[0]} (width x height); pass the mask segment() "
            "returned for this image"
        )
    colors = _colors(cfg).astype(np.float32) / 255.0
    weight = np.full(indices.shape, alpha, dtype=np.float32)
    if background is not None:
        weight[indices == background] = 0.0
    weight = weight[:, :, None]
    blended = rgb * (1 - weight) + colors[indices] * weight
    return Image.fromarray(np.round(blended * 255).astype(np.uint8))  # mode "RGB"


def save_overlay(
    path: str | os.PathLike[str],
    image: ImageInput,
    indices: np.ndarray | torch.Tensor,
    config: UNetConfig | torch.nn.Module,
    alpha: float = 0.5,
    *,
    background: int | None = 0,
) -> None:
    """Write ``overlay(image, indices, config, alpha)`` as a PNG (atomically).

    Raises:
        InputError: as ``overlay``.
        OSError: the file cannot be written (any previous file stays intact).
    """
    picture = overlay(image, indices, config, alpha, background=background)
    with atomic_write(path, "wb") as handle:
        picture.save(cast("IO[bytes]", handle), format="PNG")
