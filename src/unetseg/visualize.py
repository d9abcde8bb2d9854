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

Ground-truth masks may hold void pixels: the config's ``ignore_index`` (``fit()`` records the
data set's) or one passed as ``ignore_index=``; any other value outside the classes is
refused. ``colorize`` paints void in the colour the training masks gave it when the config
knows it (colour masks' ``ignore_colors``; for palette masks the VOC palette entry, cream
(224, 224, 192) for 255: the config does not record the masks' own palette beyond the
classes), else white; ``overlay`` leaves void untinted; ``save_mask`` writes void back as
the training masks stored it, so the file reads back as the same indices.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, Any, cast

import numpy as np
import torch
from PIL import Image, ImageOps

from ._utils import atomic_write, is_integer, is_number
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


def _void_label(config: UNetConfig, ignore_index: object) -> int | None:
    """The value marking void pixels: ``ignore_index`` if given, else the config's."""
    if ignore_index is None:
        return config.ignore_index
    k = config.num_classes
    if not is_integer(ignore_index):
        raise InputError(f"ignore_index must be an integer or None, got {ignore_index!r}")
    if 0 <= ignore_index < k:
        raise InputError(
            f"ignore_index={ignore_index} is class {ignore_index} of this {k}-class model; "
            "pass the value that marks void pixels, outside the classes (e.g. 255 or -100)"
        )
    return int(ignore_index)


def _check_indices(
    indices: np.ndarray | torch.Tensor, num_classes: int, void: int | None = None
) -> np.ndarray:
    """(H, W) integer class indices as numpy, each in ``0 .. num_classes - 1`` or ``void``."""
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.size == 0:
        raise InputError(
            f"expected a non-empty (H, W) mask of class indices, got shape {indices.shape}"
        )
    if not np.issubdtype(indices.dtype, np.integer):
        raise InputError(f"class indices must be integers, got dtype {indices.dtype}")
    if int(indices.min()) >= 0 and int(indices.max()) < num_classes:
        return indices  # the common case (a prediction) without a pass per value
    bad = (indices < 0) | (indices >= num_classes)
    if void is not None:
        bad &= indices != void
    if bad.any():
        found = np.unique(indices[bad])
        shown = ", ".join(str(v) for v in found[:8].tolist()) + (", ..." if found.size > 8 else "")
        allowed = f"0..{num_classes - 1}" + (f" or void {void}" if void is not None else "")
        fix = (
            "map them to a class or to the void value first"
            if void is not None
            else f"pass ignore_index={found[0]} if that value marks void pixels"
        )
        raise InputError(
            f"class indices must be in {allowed} for a {num_classes}-class model, found "
            f"{shown}; {fix}"
        )
    return indices


def _void_pixels(indices: np.ndarray, void: int | None) -> tuple[int, np.ndarray] | None:
    """The void value and the boolean (H, W) mask of its pixels; None when there are none."""
    if void is None:
        return None
    found: np.ndarray = indices == void
    return (void, found) if found.any() else None


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


# Void without a colour of its own: white, which default_palette never gives (its brightest
# is (224, 224, 192)); black or grey when a class is drawn white.
_NEUTRAL_VOID = ((255, 255, 255), (0, 0, 0), (128, 128, 128))


def _void_color(config: UNetConfig, void: int) -> tuple[int, int, int]:
    """The colour of void pixels (see the module docstring)."""
    if config.mask_encoding == "color" and config.ignore_colors:
        return config.ignore_colors[0]  # CamVid: void stays black, as it was drawn
    taken = {(c[0], c[1], c[2]) for c in _colors(config).tolist()}
    if config.mask_encoding == "palette" and 0 <= void <= 255:
        # Palette masks are mostly drawn in the VOC palette, which save_mask also writes
        # for entries no class uses: void 255 keeps VOC's cream border colour.
        red, green, blue = default_palette(256)[void].tolist()
        if (red, green, blue) not in taken:
            return (red, green, blue)
    return next((c for c in _NEUTRAL_VOID if c not in taken), _NEUTRAL_VOID[0])


def to_mask_values(
    indices: np.ndarray | torch.Tensor,
    config: UNetConfig | torch.nn.Module,
    *,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Map class indices to the mask values the training masks used.

    Args:
        indices: (H, W) class indices, as ``segment()`` returns them, or a ground-truth
            mask whose void pixels hold ``ignore_index``.
        config: the model's config (or the model).
        ignore_index: the value of void pixels; default the config's ``ignore_index``.
            Void pixels keep it: grey, index and palette masks store void as itself.

    Returns:
        (H, W) array of ``config.mask_values[index]`` (grey levels such as 0/255, or
        palette indices) in the smallest dtype that holds them (unsigned unless the void
        value is negative); the indices themselves when the config records no
        ``mask_values``.

    Raises:
        InputError: not a 2-D integer array, values neither a class nor void, or a void
            value that is also a class's mask value (it would read back as that class).
    """
    cfg = _config(config)
    void = _void_label(cfg, ignore_index)
    indices = _check_indices(indices, cfg.num_classes, void)
    values = cfg.mask_values if cfg.mask_values is not None else tuple(range(cfg.num_classes))
    found = _void_pixels(indices, void)
    if found is None:
        plain: np.ndarray = np.asarray(values, dtype=np.min_scalar_type(max(values)))[indices]
        return plain
    void, voids = found
    if void in values:
        raise InputError(
            f"ignore_index={void} is also the mask value of class {values.index(void)} "
            f"(mask values {list(values)}), so void pixels would read back as that class; "
            "pass the value the masks use for void pixels"
        )
    dtype = np.result_type(np.min_scalar_type(min(void, 0)), np.min_scalar_type(max(*values, void)))
    mapped: np.ndarray = np.asarray(values, dtype=dtype)[np.where(voids, 0, indices)]
    mapped[voids] = void
    return mapped


def colorize(
    indices: np.ndarray | torch.Tensor,
    config: UNetConfig | torch.nn.Module,
    *,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Paint each class in its colour, and void pixels in the void colour.

    Args:
        indices: (H, W) class indices: a prediction, or a ground-truth mask whose void
            pixels hold ``ignore_index``.
        config: the model's config (or the model); its ``class_colors`` are used when set,
            otherwise ``default_palette``.
        ignore_index: the value of void pixels; default the config's ``ignore_index``
            (``fit()`` records the data set's there).

    Returns:
        (H, W, 3) uint8 RGB image. Void pixels get the colour the training masks gave them
        (``config.ignore_colors``; for palette masks the VOC palette entry, (224, 224, 192)
        for 255), else white (black or grey if a class is white).

    Raises:
        InputError: not a 2-D integer array, values neither a class nor void, or an
            ``ignore_index`` that is a class.
    """
    cfg = _config(config)
    void = _void_label(cfg, ignore_index)
    indices = _check_indices(indices, cfg.num_classes, void)
    found = _void_pixels(indices, void)
    colors = _colors(cfg)
    if found is None:
        painted: np.ndarray = colors[indices]
        return painted
    void, voids = found
    painted = colors[np.where(voids, 0, indices)]
    painted[voids] = _void_color(cfg, void)
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


def _unstorable_void(void: int, high: int, what: str, num_classes: int) -> InputError:
    spare = 255 if num_classes <= 255 else high  # a value past the classes that fits
    return InputError(
        f"void value {void} cannot be stored in {what} (values 0..{high}); map void pixels "
        f"to a value outside the classes that fits, e.g. mask[mask == {void}] = {spare}, and "
        f"pass ignore_index={spare}"
    )


def mask_image(
    indices: np.ndarray | torch.Tensor,
    config: UNetConfig | torch.nn.Module,
    *,
    ignore_index: int | None = None,
) -> Image.Image:
    """The PIL image ``save_mask`` writes: the mask in the training masks' encoding.

    See the module docstring for the image mode chosen per ``mask_encoding`` and for
    void pixels.
    """
    cfg = _config(config)
    void = _void_label(cfg, ignore_index)
    indices = _check_indices(indices, cfg.num_classes, void)
    found = _void_pixels(indices, void)
    encoding = cfg.mask_encoding
    k = cfg.num_classes
    if encoding == "color" and (k < 256 or (k == 256 and found is None)):
        table = _color_table(cfg, range(k))
        if found is None:
            return _palette_image(indices, table)
        void, voids = found
        # Entry ignore_index when it fits, so the file reads back as the same indices.
        entry = void if 0 <= void <= 255 else 255
        table[entry] = _void_color(cfg, void)
        return _palette_image(np.where(voids, entry, indices), table)
    if encoding == "color":  # too many classes for a palette: plain RGB
        return Image.fromarray(colorize(indices, cfg, ignore_index=void))
    if encoding in ("binary", "grey", "palette"):
        values = to_mask_values(indices, cfg, ignore_index=void)
    else:  # index masks, or no encoding recorded: the classes themselves
        values = indices
    if encoding == "palette" and max(cfg.mask_values or (k - 1,)) <= 255:
        if found is not None and not 0 <= found[0] <= 255:
            raise _unstorable_void(found[0], 255, "a palette PNG", k)
        entries = cfg.mask_values if cfg.mask_values is not None else tuple(range(k))
        table = _color_table(cfg, entries)
        if found is not None:
            table[found[0]] = _void_color(cfg, found[0])
        return _palette_image(values, table)
    if found is not None and not 0 <= found[0] <= 65535:
        raise _unstorable_void(found[0], 65535, "a PNG mask", k)
    if int(values.max(initial=0)) <= 255:
        return Image.fromarray(values.astype(np.uint8, copy=False))  # mode "L"
    if int(values.max()) <= 65535:
        return Image.fromarray(values.astype(np.uint16, copy=False))  # mode "I;16"
    raise InputError(f"mask values up to {int(values.max())} do not fit a 16-bit PNG")


def save_mask(
    path: str | os.PathLike[str],
    indices: np.ndarray | torch.Tensor,
    config: UNetConfig | torch.nn.Module,
    *,
    ignore_index: int | None = None,
) -> None:
    """Write a mask as a PNG in the encoding of the training masks (atomically).

    Binary/grey configs give a greyscale PNG of the original values (0/255 stays 0/255);
    colour and palette configs a palette PNG with the original colours; otherwise a
    greyscale PNG of class indices. The file is PNG whatever the suffix.

    Void pixels of a ground-truth mask are written as the training masks wrote them, so
    the file reads back through ``SegmentationDataset`` as the same indices: grey, index
    and palette masks hold the void value itself (255 stays 255); colour masks hold the
    void colour (``config.ignore_colors``) at palette entry ``ignore_index`` (or 255).

    Args:
        path: destination file; its folder is created.
        indices: (H, W) class indices, as ``segment()`` returns them, or a ground-truth
            mask whose void pixels hold ``ignore_index``.
        config: the model's config (or the model).
        ignore_index: the value of void pixels; default the config's ``ignore_index``.

    Raises:
        InputError: bad indices (values neither a class nor void), a void value the
            PNG cannot hold (negative, say: the message says how to remap it), or a
            ``path`` that is not a file name (the mask passed first).
        OSError: the file cannot be written (any previous file stays intact).
    """
    _check_path("save_mask(path, indices, config)", path)
    image = mask_image(indices, config, ignore_index=ignore_index)
    with atomic_write(path, "wb") as handle:
        image.save(cast("IO[bytes]", handle), format="PNG")


def _check_path(signature: str, path: object) -> None:
    # The destination comes first, as in PIL's and OpenCV's writers; with the mask first
    # the file name would be read as a mask of shape (), which names neither mistake.
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(
            f"{signature} takes the destination file first, got a {type(path).__name__} as "
            "path; pass the file name, then the mask"
        )


# A 16-bit or float image whose 99.5th percentile is below this share of white is too dark
# to see (12-bit data in 16-bit files reaches 1/16): it is stretched for display.
_DARK = 0.25
_STRETCH_PIXELS = 1 << 20  # percentiles are taken on about this many pixels


def _display_rgb(image: ImageInput, bands: Sequence[int] | None = None) -> np.ndarray:
    """Any image input -> (H, W, 3) float32 in [0, 1] for display (see ``overlay``)."""
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
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim == 3:
            array = array[:, :, _shown_bands(array.shape[2], bands)]
        deep = array.dtype not in (np.uint8, np.bool_)
        unit = convert_channels(to_unit_range(array), 3, name="image")
    except ImageError as err:
        raise InputError(f"cannot show the image: {err}") from None
    low, high = float(unit.min()), float(unit.max())
    if low < 0 or high > 1:  # float images in their own scale: stretch for display
        unit = (unit - low) / max(high - low, 1e-12)
    if deep:
        stride = max(1, int((unit.shape[0] * unit.shape[1] / _STRETCH_PIXELS) ** 0.5))
        dark, bright = np.percentile(unit[::stride, ::stride], [0.5, 99.5])
        if bright < _DARK and bright > dark:
            unit = np.clip((unit - dark) / (bright - dark), 0.0, 1.0)
    return unit


def _shown_bands(channels: int, bands: Sequence[int] | None) -> list[int]:
    """Channel indices to show: ``bands`` checked, else the first three (or fewer)."""
    if bands is None:
        return list(range(min(channels, 3 if channels != 2 else 1)))
    chosen = list(bands) if isinstance(bands, (list, tuple)) else None
    if (
        chosen is None
        or len(chosen) not in (1, 3)
        or not all(is_integer(b) and 0 <= b < channels for b in chosen)
    ):
        raise InputError(
            f"bands must be 1 (grey) or 3 (red, green, blue) channel indices in "
            f"0..{channels - 1} of this {channels}-channel image, got {bands!r}; e.g. "
            "bands=(3, 2, 1) shows Sentinel-2's red, green and blue"
        )
    return [int(b) for b in chosen]


def overlay(
    image: ImageInput,
    indices: np.ndarray | torch.Tensor,
    config: UNetConfig | torch.nn.Module,
    alpha: float = 0.5,
    *,
    background: int | None = 0,
    ignore_index: int | None = None,
    bands: Sequence[int] | None = None,
) -> Image.Image:
    """Blend the class colours over the image.

    Void pixels (``ignore_index``) of a ground-truth mask are left untinted, as
    mmsegmentation and detectron2 draw them: they are unlabelled, and a wash of void colour
    would hide the image where the labels are missing.

    The picture under the colours: grey as grey, RGB as RGB, alpha ignored, and of a
    multi-band image its first three bands as red, green and blue unless ``bands`` picks
    others. A 16-bit or float image too dark to see (12-bit data in a 16-bit file, say:
    its 99.5th percentile below a quarter of white) is stretched, its 0.5th to 99.5th
    percentiles to black and white.

    Args:
        image: the segmented image (path, PIL image, array or tensor, as for ``segment()``).
        indices: (H, W) class indices of the same height and width: a prediction, or a
            ground-truth mask whose void pixels hold ``ignore_index``.
        config: the model's config (or the model), for the colours.
        alpha: opacity of the colours, in [0, 1].
        background: class left untinted (``None``: tint every class).
        ignore_index: the value of void pixels; default the config's ``ignore_index``.
        bands: the image's channels to show, 0-based: one (as grey) or three (as red,
            green, blue), e.g. ``(3, 2, 1)`` for Sentinel-2's true colour; ``None``: the
            first three.

    Returns:
        RGB PIL image of the image's size.

    Raises:
        InputError: unreadable image, bad indices (values neither a class nor void), sizes
            that differ, alpha out of range, or ``bands`` that the image lacks.
    """
    if not is_number(alpha) or not 0 <= alpha <= 1:
        raise InputError(f"alpha must be in [0, 1], got {alpha!r}")
    cfg = _config(config)
    void = _void_label(cfg, ignore_index)
    indices = _check_indices(indices, cfg.num_classes, void)
    rgb = _display_rgb(image, bands)
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
    if (found := _void_pixels(indices, void)) is not None:
        weight[found[1]] = 0.0
        indices = np.where(found[1], 0, indices)  # any class: their weight is 0
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
    ignore_index: int | None = None,
    bands: Sequence[int] | None = None,
) -> None:
    """Write ``overlay(image, indices, config, alpha, ...)`` as a PNG (atomically).

    Raises:
        InputError: as ``overlay``, or a ``path`` that is not a file name.
        OSError: the file cannot be written (any previous file stays intact).
    """
    _check_path("save_overlay(path, image, indices, config)", path)
    picture = overlay(
        image, indices, config, alpha, background=background, ignore_index=ignore_index,
        bands=bands,
    )  # fmt: skip
    with atomic_write(path, "wb") as handle:
        picture.save(cast("IO[bytes]", handle), format="PNG")
