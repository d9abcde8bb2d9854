"""TIFFs that Pillow cannot read faithfully: multi-band, 16-bit colour and band-per-page stacks.

Pillow reads TIFFs of one sample per pixel at any depth, and 8-bit RGB, RGBA, LA and CMYK.
It misreads the rest without a word: a 16-bit RGB TIFF comes back as 8 bits (12-bit data
becomes 0..15), a fourth band not marked as alpha (RGB + near-infrared) is dropped, a
multi-page TIFF gives only its first page; and it cannot open 2-, 5- or more-band TIFFs.

``tiff_layout`` reads the first page's tags with Pillow's own tag parser, which needs no
pixel mode. ``read_bands`` decodes what Pillow cannot: a stack of single-band pages of
the same size with Pillow itself (one band per page, as GDAL and tifffile read them),
multi-sample pages with tifffile when it is installed (``pip install tifffile``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, TiffImagePlugin

from .errors import ImageError

__all__ = ["TIFF_SUFFIXES", "TiffLayout", "read_bands", "tiff_layout"]

TIFF_SUFFIXES = (".tif", ".tiff")
_MAX_PAGES = 4096  # pages followed when counting bands (a guard against IFD loops)
_ALPHA = (1, 2)  # ExtraSamples values of associated and unassociated alpha
_CMYK, _YCBCR = 5, 6  # PhotometricInterpretation values Pillow converts to RGB itself


@dataclass(frozen=True)
class TiffLayout:
    """What the first page of a TIFF holds, and how many same-size pages follow it."""

    width: int
    height: int
    samples: int  # samples per pixel of the first page
    bits: int  # largest bits per sample
    photometric: int
    alpha: bool  # the last extra sample is alpha
    pages: int  # consecutive full-resolution pages of the first page's size

    @property
    def channels(self) -> int:
        """Channels ``read_bands`` gives: one per page of a stack, else the samples."""
        return self.pages if self.pages > 1 else self.samples

    def pillow_reads(self) -> bool:
        """Whether Pillow decodes every band at its full depth."""
        if self.pages > 1:
            return False
        if self.samples == 1:
            return True
        if self.bits > 8:
            return False
        return (
            self.samples == 3
            or (self.samples in (2, 4) and self.alpha)
            or (self.samples == 4 and self.photometric == _CMYK)
        )

    def describe(self) -> str:
        if self.pages > 1:
            return f"a TIFF of {self.pages} pages of {self.samples} samples per pixel"
        return f"a TIFF of {self.samples} bands of {self.bits} bits per pixel"


def _ifd(handle: IO[bytes], prefix: bytes, offset: int) -> TiffImagePlugin.ImageFileDirectory_v2:
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix)
    handle.seek(offset)
    ifd.load(handle)
    return ifd


def tiff_layout(path: Path) -> TiffLayout | None:
    """The layout of a TIFF's first page, or ``None`` if its header cannot be parsed.

    ``None`` leaves the file to Pillow, whose own errors then name the problem.
    """
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if prefix[:2] not in (b"II", b"MM"):
                return None
            if len(prefix) == 8 and prefix[2] == 43:  # BigTIFF: a 16-byte header
                prefix += handle.read(8)
            first = TiffImagePlugin.ImageFileDirectory_v2(prefix)
            ifd = _ifd(handle, prefix, first.next)
            size = (int(ifd[256]), int(ifd[257]))
            bits = ifd.get(258, (1,))
            extra = ifd.get(338, ())
            extra = extra if isinstance(extra, tuple) else (extra,)
            pages, seen = 1, {first.next}
            following = ifd.next
            while following and following not in seen and pages < _MAX_PAGES:
                seen.add(following)
                page = _ifd(handle, prefix, following)
                reduced = int(page.get(254, 0)) & 1  # an overview, not a band
                if reduced or (int(page.get(256, 0)), int(page.get(257, 0))) != size:
                    break
                pages, following = pages + 1, page.next
    except (OSError, ValueError, KeyError, TypeError, SyntaxError, EOFError):
        return None
    return TiffLayout(
        width=size[0],
        height=size[1],
        samples=int(ifd.get(277, 1)),
        bits=max(bits) if isinstance(bits, tuple) else int(bits),
        photometric=int(ifd.get(262, 1)),
        alpha=bool(extra) and int(extra[-1]) in _ALPHA,
        pages=pages,
    )


def read_bands(path: Path, layout: TiffLayout) -> np.ndarray:
    """Decode a TIFF Pillow would misread into an (H, W, C) array of its native dtype.

    Raises:
        ImageError: pages of several samples each, pages that disagree, or a multi-band
            page without tifffile installed; each names the file and the fix.
    """
    if layout.pages > 1:
        return _stack_pages(path, layout)
    try:
        tifffile = importlib.import_module("tifffile")
    except ImportError:
        raise ImageError(
            f"{path}: {layout.describe()}, which Pillow cannot read without losing bands or "
            "bits; install tifffile (pip install tifffile) and unetseg reads it with that, "
            "or save the image as a .npy array of shape (H, W, C)"
        ) from None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            array = np.asarray(page.asarray())
            axes = str(page.axes)
    except Exception as err:  # tifffile raises many types for corrupt or unsupported data
        raise ImageError(f"{path}: tifffile cannot decode it ({err})") from None
    if axes.startswith("S"):  # planar (band-sequential) storage: (C, H, W)
        array = np.moveaxis(array, 0, -1)
    if array.ndim != 3 or array.shape[:2] != (layout.height, layout.width):
        raise ImageError(
            f"{path}: tifffile read shape {array.shape} ({axes}) for a {layout.width}x"
            f"{layout.height} page; save the image as a .npy array of shape (H, W, C)"
        )
    return array


def _stack_pages(path: Path, layout: TiffLayout) -> np.ndarray:
    if layout.samples != 1:
        raise ImageError(
            f"{path}: {layout.describe()}; unetseg reads a multi-page TIFF as one band per "
            "page, so each page must hold one band: save one file per page, or the bands "
            "as a .npy array of shape (H, W, C)"
        )
    bands: list[np.ndarray] = []
    try:
        with Image.open(path) as image:
            for page in range(layout.pages):
                image.seek(page)
                bands.append(np.asarray(image))
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(
            f"{path}: page {len(bands) + 1} of {layout.pages} cannot be decoded ({err}); "
            "the file may be truncated"
        ) from None
    if len({(band.shape, band.dtype) for band in bands}) > 1:
        found = ", ".join(f"{b.dtype}{list(b.shape)}" for b in bands[:8])
        raise ImageError(
            f"{path}: its {layout.pages} pages, read as bands, differ in shape or type "
            f"({found}); save the bands as a .npy array of shape (H, W, C)"
        )
    return np.stack(bands, axis=2)
