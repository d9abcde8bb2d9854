"""Which image goes with which mask: folders, file lists or arrays -> (image, mask) sources.

Folders pair by file stem: ``x.jpg`` with ``x.png`` or ``x_mask.png`` (mask stems may carry
``_mask``, ``_label``, ``_gt``, ``-seg``, CamVid's ``_L``, ... and image stems
``_image``/``_img``); identical stems always pair as they are (``scan_raw`` with
``scan_raw``). Hidden files (``.DS_Store``, ``._x.png``) and non-image files are ignored.
Lists and stacked arrays pair by position. Nothing is decoded here; ``SegmentationDataset`` reads what this returns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch

from ._utils import logger
from .errors import DatasetError
from .imaging import IMAGE_EXTENSIONS

__all__ = ["MAX_LISTED", "Inputs", "Source", "listing", "pair_files", "resolve_inputs"]

#: One image or mask: a file, or an array the user passed.
Source: TypeAlias = Path | np.ndarray
Inputs: TypeAlias = str | os.PathLike[str] | np.ndarray | Sequence[Any]

_EXTENSIONS = (*IMAGE_EXTENSIONS, ".npy")
_MASK_SUFFIXES = (
    "mask", "masks", "label", "labels", "lbl", "gt", "groundtruth", "ground_truth", "seg",
    "segmentation", "annotation", "annotations", "anno", "target", "trimap", "l",
)  # fmt: skip
_IMAGE_SUFFIXES = ("image", "img", "im", "input", "raw")
_SEPARATORS = ("_", "-", ".", " ")
#: Messages list at most this many files, then say how many more.
MAX_LISTED = 10


def listing(items: Sequence[object], limit: int = MAX_LISTED) -> str:
    """``items`` joined by commas for a message, cut after ``limit`` with a count of the rest."""
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
        logger.info("%s: ignoring %d non-image file(s): %s", folder, len(skipped), listing(skipped))
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
            f"{listing(duplicates)}; keep one file per stem (remove or rename the others)"
        )
    return {key: group[0] for key, group in groups.items()}


def _split_shared(files: list[Path], folder: Path) -> tuple[list[Path], list[Path]]:
    """One folder of both (``x.tif`` beside ``x_mask.tif``): masks are the suffixed stems."""
    masks = [p for p in files if _pair_key(p.stem, _MASK_SUFFIXES) != p.stem]
    taken = set(masks)  # membership in the list was quadratic: minutes for 40,000 files
    images = [p for p in files if p not in taken]
    if not masks or not images:
        raise DatasetError(
            f"images and masks are both read from {folder}, but {len(masks)} of its "
            f"{len(files)} files have a mask suffix (x_mask.png beside x.png); name the masks "
            "so, put them in a folder of their own, or pass two lists of paths"
        )
    return images, masks


def pair_files(
    image_dir: str | os.PathLike[str], mask_dir: str | os.PathLike[str]
) -> list[tuple[Path, Path]]:
    """Pair images with masks by file stem.

    Identical stems pair first; the other files pair with mask stems stripped of a suffix
    (``_mask``, ``_label``, ``_gt``, ``-seg``, ``_L``, ...) and image stems of
    ``_image``/``_img``; extensions may differ (``x.jpg`` with ``x.png``). Hidden files and
    non-image files are ignored. One folder may hold both: the files with a mask suffix
    are the masks.

    Returns:
        (image, mask) paths, sorted by image name.

    Raises:
        DatasetError: an empty folder, several files with one stem, or unmatched stems
            (all listed).
    """
    image_files = _list_folder(Path(image_dir), "image")
    mask_files = _list_folder(Path(mask_dir), "mask")
    if Path(image_dir).resolve() == Path(mask_dir).resolve():
        image_files, mask_files = _split_shared(image_files, Path(image_dir))
    exact_images = _keyed(image_files, (), "image")
    exact_masks = _keyed(mask_files, (), "mask")
    # Identical stems pair as they are, even one ending like a suffix (``cell_seg``).
    same = exact_images.keys() & exact_masks.keys()
    pairs = [(exact_images[k], exact_masks[k]) for k in same]
    rest_images = [p for k, p in exact_images.items() if k not in same]
    rest_masks = [p for k, p in exact_masks.items() if k not in same]
    images = _keyed(rest_images, _IMAGE_SUFFIXES, "image")
    masks = _keyed(rest_masks, _MASK_SUFFIXES, "mask")
    lonely_images = sorted(images[k].name for k in images.keys() - masks.keys())
    lonely_masks = sorted(masks[k].name for k in masks.keys() - images.keys())
    if lonely_images or lonely_masks:
        parts = []
        if lonely_images:
            parts.append(f"images without a mask in {mask_dir}: {listing(lonely_images)}")
        if lonely_masks:
            parts.append(f"masks without an image in {image_dir}: {listing(lonely_masks)}")
        raise DatasetError(
            "; ".join(parts) + ". Masks pair with images by file stem (x.jpg with x.png or "
            "x_mask.png); rename them, or pass two lists of paths in matching order"
        )
    pairs += [(images[k], masks[k]) for k in images]
    return sorted(pairs, key=lambda pair: pair[0].name)


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
            array = item.detach().cpu().numpy()
            if what == "images" and array.ndim == 3:
                array = array.transpose(1, 2, 0)  # torch's (C, H, W), as segment() reads it
            out.append(array)
        else:
            raise DatasetError(f"{what}: {type(item).__name__} is neither a path nor an array")
    return out


def resolve_inputs(images: Inputs, masks: Inputs) -> list[tuple[Source, Source]]:
    """Pair what the user passed: two folders by stem (``pair_files``), two lists by position.

    Returns:
        (image, mask) sources: paths, or arrays (tensors become numpy arrays; image
        tensors are (C, H, W)).

    Raises:
        DatasetError: a folder with a list, lists of different lengths, empty inputs, or
            anything that is neither a path nor an array.
    """
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
