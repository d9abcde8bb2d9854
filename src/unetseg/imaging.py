"""Reading images and turning them into model input, identically for training and inference.

One path from "whatever the user has" to a normalised (C, H, W) float tensor:

1. ``read_image``: a file -> numpy array in its native dtype, EXIF orientation applied,
   with cheap checks for non-images, truncation and decompression bombs.
2. ``to_unit_range``: native dtype -> float32 in [0, 1] by the dtype's own range
   (16-bit by 65535, never clipped to 8 bits); float images pass through unchanged.
3. ``convert_channels``: grey/RGB/RGBA -> the channel count the model takes, by fixed,
   documented rules.
4. ``normalize``: subtract the per-channel mean and divide by the std recorded in the config.

``prepare_image`` runs 2-4 on an array, PIL image or tensor. ``SegmentationDataset`` and
``segment()`` both call it, so inference preprocesses exactly as training did.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ._tiff import TIFF_SUFFIXES, TiffLayout, read_bands, tiff_layout
from .errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "convert_channels",
    "has_alpha",
    "load_npy",
    "normalize",
    "npy_header",
    "open_image",
    "prepare_image",
    "read_image",
    "to_unit_range",
]

#: Images larger than this are refused as possible decompression bombs (about 16k x 16k).
DEFAULT_MAX_PIXELS = 268_435_456
IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".gif",
    ".webp",
    ".ppm",
    ".pgm",
)

# Luma weights of ITU-R BT.601, as PIL's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def open_image(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open an image lazily (header only), refusing non-images and decompression bombs.

    EXIF orientation is not applied here (it needs the pixels); ``read_image`` applies it.
    Use this to learn size and mode cheaply.

    Raises:
        ImageError: the file is missing, not an image, or has more than ``max_pixels`` pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({err})") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path}: not an image PIL can read; remove it or convert it to PNG"
        ) from None
    except OSError as err:
        raise ImageError(f"{path}: cannot be opened ({err})") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageError(
            f"{path}: {width}x{height} = {width * height:,} pixels exceeds max_pixels="
            f"{max_pixels:,} (a guard against decompression bombs); raise max_pixels if the image is genuine"
        )
    return image


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only."""
    orientation = image.getexif().get(0x0112, 1)
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
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
    npy_header(path)  # a clear message for pickles before numpy's own
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ImageError(f"{path}: cannot be loaded ({err}); the file may be truncated") from None
    if not isinstance(array, np.ndarray):
        raise ImageError(f"{path}: expected one array (.npy), got {type(array).__name__}")
    return array


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file (or a ``.npy`` array, never unpickled) to a numpy array.

    EXIF orientation is applied. Palette, CMYK, YCbCr and 1-bit images become RGB or L;
    16-bit and float images keep their values. TIFFs that Pillow would misread are read
    band by band (``_tiff``): a multi-page TIFF of single-band pages of one size gives one
    channel per page; a TIFF of several 16-bit or float bands, or of bands beyond RGB(A),
    needs tifffile (``pip install tifffile``).

    Returns:
        (H, W) for single-channel images, (H, W, C) otherwise; dtype uint8, uint16,
        int32 or float32.

    Raises:
        ImageError: missing, unreadable, truncated or too large.
    """
    if Path(path).suffix.lower() == ".npy":
        if not Path(path).is_file():
            raise ImageError(f"{path}: no such file")
        return load_npy(path)
    layout = _misread_tiff(Path(path), max_pixels)
    if layout is not None:
        return read_bands(Path(path), layout)
    image = open_image(path, max_pixels=max_pixels)
    try:
        with image:
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_array_mode(image)
            array = np.asarray(image)
    except (OSError, ValueError) as err:  # truncated or corrupt data (ValueError: TIFF modes)
        raise ImageError(f"{path}: cannot be decoded ({err}); the file may be truncated") from None
    return array


def _misread_tiff(path: Path, max_pixels: int) -> TiffLayout | None:
    """The layout of a TIFF that Pillow would misread (``_tiff``), else ``None``.

    Raises:
        ImageError: such a TIFF with more than ``max_pixels`` pixels.
    """
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return None
    layout = tiff_layout(path)
    if layout is None or layout.pillow_reads():
        return None
    if layout.width * layout.height > max_pixels:
        raise ImageError(
            f"{path}: {layout.width}x{layout.height} = {layout.width * layout.height:,} pixels "
            f"exceeds max_pixels={max_pixels:,} (a guard against decompression bombs); raise "
            "max_pixels if the image is genuine"
        )
    return layout


def has_alpha(path: str | os.PathLike[str]) -> bool:
    """Whether an image file marks a channel as alpha (header only).

    RGBA/LA images, palette images with transparency, and TIFFs whose last extra sample
    is alpha do; ``.npy`` arrays and TIFF bands not marked as alpha do not.

    Raises:
        ImageError: the file cannot be opened.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return False
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        layout = tiff_layout(path)
        if layout is not None and not layout.pillow_reads():
            return layout.pages == 1 and layout.alpha
    with open_image(path) as image:
        return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode == "P" and "transparency" in image.info
        )


def _to_array_mode(image: Image.Image) -> Image.Image:
    """Convert modes numpy cannot represent usefully to L/RGB/RGBA; keep deep modes."""
    mode = image.mode
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    if mode == "1":
        return image.convert("L")
    if mode == "PA":
        return image.convert("RGBA")
    return image


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """Scale an image array to float32 in [0, 1] by its dtype's range.

    uint8 / 255, uint16 / 65535, other integers by the smallest of those ranges that holds
    their maximum, bool as 0/1; float arrays are returned as float32 unchanged (they are
    taken to be in the user's own scale; normalisation statistics absorb it).

    Raises:
        ImageError: the array is empty, of a non-numeric dtype, or holds NaN/inf.
    """
    if array.size == 0:
        raise ImageError(f"empty image array of shape {array.shape}")
    if not array.dtype.isnative:
        # Big-endian TIFFs (I;16B) decode as ">u2", which is not np.uint16: without this
        # they would be scaled by their content (255 when dark) instead of by 65535.
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            raise ImageError("image holds NaN or infinite values; replace them before segmenting")
        return out
    if not np.issubdtype(array.dtype, np.integer):
        raise ImageError(f"image arrays must be numeric, got dtype {array.dtype}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise ImageError(f"integer image has negative values (min {low}); pass it as float instead")
    scale = 255.0 if high <= 255 else 65535.0 if high <= 65535 else float(2**32 - 1)
    return array.astype(np.float32) / scale


def convert_channels(array: np.ndarray, in_channels: int, *, name: str = "image") -> np.ndarray:
    """Make an (H, W) or (H, W, C) float array have ``in_channels`` channels.

    Rules: a 1-channel model takes grey as is, RGB as BT.601 luma, RGBA/LA without alpha;
    a 3-channel model repeats grey three times and drops alpha from RGBA; a 4-channel
    model adds an opaque alpha to RGB. Otherwise the channel counts must match.

    Returns:
        (H, W, in_channels) float32.

    Raises:
        ImageError: the counts cannot be reconciled; the message gives both.
    """
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ImageError(f"{name}: expected (H, W) or (H, W, C), got shape {array.shape}")
    channels = array.shape[2]
    if channels == in_channels:
        return array
    if channels == 2 and in_channels in (1, 3):  # grey + alpha
        return convert_channels(array[:, :, :1], in_channels, name=name)
    if channels == 4 and in_channels in (1, 3):  # RGBA: drop alpha
        return convert_channels(array[:, :, :3], in_channels, name=name)
    if channels == 3 and in_channels == 1:
        return np.tensordot(array, _LUMA, axes=([2], [0]))[:, :, None].astype(np.float32)
    if channels == 1 and in_channels in (3, 4):
        grey = np.repeat(array, 3, axis=2)
        return convert_channels(grey, in_channels, name=name)
    if channels == 3 and in_channels == 4:
        alpha = np.ones((*array.shape[:2], 1), dtype=array.dtype)
        return np.concatenate([array, alpha], axis=2)
    raise ImageError(
        f"{name} has {channels} channels but the model takes in_channels={in_channels}; "
        f"convert the image or build the model with in_channels={channels}"
    )


def normalize(
    array: np.ndarray, mean: Sequence[float] | None, std: Sequence[float] | None
) -> np.ndarray:
    """(H, W, C) float -> float32 (array - mean) / std per channel; identity when mean is None."""
    if mean is None or std is None:
        return array
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    # One allocation: subtract into a new float32 array, then divide it in place. Dividing
    # (not multiplying by 1/std) keeps the result bit-identical to (array - mean) / std.
    out: np.ndarray = np.subtract(array, mean_arr, dtype=np.float32)
    np.divide(out, std_arr, out=out)
    return out


def prepare_image(
    image: np.ndarray | Image.Image | torch.Tensor | str | os.PathLike[str],
    in_channels: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """Turn one image into the model's input, exactly as training did.

    Args:
        image: a path, a PIL image, an (H, W)/(H, W, C) array, or a (C, H, W) tensor.
        in_channels: the model's input channels.
        mean: per-channel mean from the config (``None``: no normalisation).
        std: per-channel standard deviation from the config.
        name: how to call the image in error messages (defaults to the path or type).
        max_pixels: decompression-bomb guard for files.

    Returns:
        (in_channels, H, W) float32 tensor.

    Raises:
        ImageError: unreadable, empty, non-finite, or a channel count that cannot be converted.
    """
    if isinstance(image, (str, os.PathLike)):
        label = name or str(image)
        array = read_image(image, max_pixels=max_pixels)
    elif isinstance(image, Image.Image):
        label = name or "PIL image"
        image = ImageOps.exif_transpose(image)
        array = np.asarray(_to_array_mode(image))
    elif isinstance(image, torch.Tensor):
        label = name or "tensor"
        if image.dim() == 2:
            image = image[None]
        if image.dim() != 3:
            raise ImageError(
                f"{label}: expected a (C, H, W) tensor, got shape {tuple(image.shape)}"
            )
        tensor = image.detach().cpu()
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
            tensor = tensor.float()
        array = tensor.permute(1, 2, 0).numpy()
    elif isinstance(image, np.ndarray):
        label = name or "array"
        array = image
    else:
        raise ImageError(
            f"cannot use {type(image).__name__} as an image; pass a path, PIL image, "
            "numpy array (H, W[, C]) or tensor (C, H, W)"
        )
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ImageError(
            f"{label}: expected a non-empty (H, W) or (H, W, C) image, got shape {array.shape}"
        )
    try:
        unit = to_unit_range(array)
    except ImageError as err:
        raise ImageError(f"{label}: {err}") from None
    unit = convert_channels(unit, in_channels, name=label)
    unit = normalize(unit, mean, std)
    chw = np.ascontiguousarray(unit.transpose(2, 0, 1), dtype=np.float32)
    if not chw.flags.writeable:  # still the caller's read-only array (a PIL "F" image, say)
        chw = chw.copy()  # torch warns about, and cannot safely wrap, read-only memory
    return torch.from_numpy(chw)
