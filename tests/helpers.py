"""File-writing helpers shared by the data, pairing and mask tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unetseg import UNetConfig
from unetseg.mask_codec import MaskCodec
from unetseg.mask_encoding import build_codec
from unetseg.masks import read_mask, summarize
from unetseg.visualize import mask_image


def write(path: Path, array: np.ndarray, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def make_folder(
    root: Path, n: int = 4, size: tuple[int, int] = (12, 16), rgb: bool = True
) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (*size, 3) if rgb else size
        write(root / "images" / f"{i:02d}.jpg", rng.integers(0, 255, shape, dtype=np.uint8))
        mask = np.zeros(size, np.uint8)
        mask[: size[0] // 2] = 255
        write(root / "masks" / f"{i:02d}_mask.png", mask)
    return root / "images", root / "masks"


def codec_for(paths: list[Path], **kwargs: Any) -> MaskCodec:
    return build_codec([summarize(read_mask(p), str(p)) for p in paths], **kwargs)


def save(tmp_path: Path, name: str, array: np.ndarray, **kwargs: Any) -> Path:
    path = tmp_path / name
    Image.fromarray(array).save(path, **kwargs)
    return path


def blocks(values: list[int], shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    """A small mask that uses every value in ``values``."""
    flat = np.resize(np.array(values), shape[0] * shape[1])
    return flat.reshape(shape)


def round_trip(codec: MaskCodec, path: Path) -> tuple[np.ndarray, Image.Image]:
    classes = codec.decode(read_mask(path), str(path))
    config = UNetConfig(
        num_classes=codec.num_classes,
        mask_encoding=codec.encoding,
        mask_values=codec.mask_values,
        class_colors=codec.class_colors,
    )
    return classes, mask_image(classes, config)
