from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetseg import InputError, UNet, UNetConfig
from unetseg.visualize import (
    colorize,
    default_palette,
    overlay,
    save_mask,
    save_overlay,
    to_mask_values,
)

INDICES = np.array([[0, 1, 1], [2, 0, 2]], dtype=np.uint8)
COLORS = ((0, 0, 0), (250, 10, 20), (5, 200, 90))


def test_binary_mask_round_trips_as_exact_0_255(tmp_path: Path) -> None:
    config = UNetConfig(num_classes=2, mask_encoding="binary", mask_values=(0, 255))
    indices = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(to_mask_values(indices, config), [[0, 255], [255, 0]])
    save_mask(tmp_path / "m.png", indices, config)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), [[0, 255], [255, 0]])


def test_color_mask_is_a_palette_png_in_the_original_colours(tmp_path: Path) -> None:
    config = UNetConfig(num_classes=3, mask_encoding="color", class_colors=COLORS)
    save_mask(tmp_path / "m.png", INDICES, config)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), INDICES)  # pixels are the classes
        rgb = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(rgb, np.asarray(COLORS, dtype=np.uint8)[INDICES])


def test_palette_mask_keeps_original_palette_indices(tmp_path: Path) -> None:
    config = UNetConfig(
        num_classes=3, mask_encoding="palette", mask_values=(0, 3, 7), class_colors=COLORS
    )
    save_mask(tmp_path / "m.png", INDICES, config)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), np.array([0, 3, 7])[INDICES])
        palette = np.asarray(image.getpalette()[:24]).reshape(8, 3)  # type: ignore[index]
    assert [tuple(palette[e]) for e in (0, 3, 7)] == list(COLORS)


def test_grey_values_above_255_use_16_bits(tmp_path: Path) -> None:
    config = UNetConfig(num_classes=3, mask_encoding="grey", mask_values=(0, 1000, 60000))
    values = to_mask_values(INDICES, config)
    assert values.dtype == np.uint16
    save_mask(tmp_path / "m.png", INDICES, config)
    with Image.open(tmp_path / "m.png") as image:
        np.testing.assert_array_equal(np.asarray(image), values)


def test_index_masks_and_missing_metadata_keep_indices(tmp_path: Path) -> None:
    model = UNet(1, 3, base_channels=4, depth=1)  # a model works where a config does
    np.testing.assert_array_equal(to_mask_values(torch.from_numpy(INDICES), model), INDICES)
    save_mask(tmp_path / "sub" / "m.png", INDICES, model)
    with Image.open(tmp_path / "sub" / "m.png") as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), INDICES)


def test_colorize_uses_class_colours_else_a_distinct_palette() -> None:
    config = UNetConfig(num_classes=3, class_colors=COLORS)
    np.testing.assert_array_equal(colorize(INDICES, config), np.asarray(COLORS)[INDICES])
    painted = colorize(INDICES, UNetConfig(num_classes=3))
    assert painted.shape == (2, 3, 3) and painted.dtype == np.uint8
    palette = default_palette(21)
    assert tuple(palette[0]) == (0, 0, 0) and tuple(palette[1]) == (128, 0, 0)
    assert len({tuple(c) for c in palette}) == 21


@pytest.mark.parametrize(
    "indices",
    [
        np.array([[0, 3]]),
        np.array([[-1, 0]]),
        np.zeros((2, 2, 2), dtype=int),
        np.zeros((2, 2), dtype=float),
    ],
)
def test_bad_indices_raise(indices: np.ndarray) -> None:
    with pytest.raises(InputError):
        colorize(indices, UNetConfig(num_classes=3))


def test_overlay_tints_classes_and_leaves_background(tmp_path: Path) -> None:
    config = UNetConfig(num_classes=3, class_colors=COLORS)
    grey = np.full((2, 3), 100, dtype=np.uint8)
    full = np.asarray(overlay(grey, INDICES, config, alpha=1.0))
    assert full.shape == (2, 3, 3)
    np.testing.assert_array_equal(full[0, 0], [100, 100, 100])  # class 0 untouched
    np.testing.assert_array_equal(full[0, 1], COLORS[1])
    half = np.asarray(overlay(grey, INDICES, config))
    np.testing.assert_array_equal(half[1, 0 + 2], np.round((np.array(COLORS[2]) + 100) / 2))
    same = np.asarray(overlay(grey, INDICES, config, alpha=np.float32(0.5)))  # numpy numbers
    np.testing.assert_array_equal(same, half)
    save_overlay(tmp_path / "o.png", Image.fromarray(grey), INDICES, config)
    with Image.open(tmp_path / "o.png") as image:
        assert image.mode == "RGB" and image.size == (3, 2)


def test_overlay_refuses_mismatched_sizes_and_bad_alpha() -> None:
    config = UNetConfig(num_classes=3)
    with pytest.raises(InputError, match="3x2"):
        overlay(np.zeros((4, 4), np.uint8), INDICES, config)
    with pytest.raises(InputError, match="alpha"):
        overlay(np.zeros((2, 3), np.uint8), INDICES, config, alpha=2.0)


def test_overlay_reads_a_pil_image_as_segment_does() -> None:
    config = UNetConfig(num_classes=3, class_colors=COLORS)
    background = np.zeros((2, 3), np.uint8)
    # EXIF orientation 6 (phone photos): segment() returns the upright 3x2 mask.
    image = Image.fromarray(np.zeros((3, 2, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    image.info["exif"] = exif.tobytes()
    assert np.asarray(overlay(image, INDICES, config)).shape == (2, 3, 3)
    # 16-bit and float images keep their scale rather than being clipped to white or black.
    deep = np.array([[0, 30000, 60000], [60000, 30000, 0]], np.uint16)
    for picture in (Image.fromarray(deep), Image.fromarray(deep.astype(np.float32) / 65535)):
        shown = np.asarray(overlay(picture, background, config))[..., 0]
        np.testing.assert_array_equal(shown, np.round(deep / 65535 * 255))


def test_default_palette_gives_every_class_its_own_colour() -> None:
    palette = default_palette(300)  # e.g. ADE20K-full: class 256 must not be black like class 0
    assert len({tuple(color) for color in palette.tolist()}) == 300
    np.testing.assert_array_equal(palette[:256], default_palette(256))
    assert colorize(np.array([[0, 256]]), UNetConfig(num_classes=300))[0, 1].any()
