from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import write
from unetseg import InputError, SegmentationDataset, UNet, UNetConfig
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


# --- ground-truth masks with void pixels -------------------------------------------------

VOID_GT = np.array([[0, 1, 255], [2, 255, 0]], dtype=np.uint8)  # VOC-style void 255


def _dataset(tmp_path: Path, masks: list[Path], **kwargs: Any) -> SegmentationDataset:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (2, 3), np.uint8) for _ in masks]
    return SegmentationDataset(images, masks, augment=False, progress=False, **kwargs)


def _round_trip(
    tmp_path: Path, masks: list[Path], reread: dict[str, Any] | None = None, **kwargs: Any
) -> UNetConfig:
    """SegmentationDataset -> save_mask -> SegmentationDataset gives the same files/classes.

    The written masks are read again with ``reread`` (default ``kwargs``) and ``like=``.
    """
    first = _dataset(tmp_path, masks, **kwargs)
    config = UNetConfig(**first.config_fields())
    written = []
    for i, original in enumerate(masks):
        gt = first[i][1]
        assert (gt == config.ignore_index).any()  # the void pixels are there
        written.append(tmp_path / "out" / f"{i}.png")
        save_mask(written[-1], gt, config)
        with Image.open(original) as before, Image.open(written[-1]) as after:
            np.testing.assert_array_equal(np.asarray(after.convert("RGB")), before.convert("RGB"))
    fresh = _dataset(tmp_path, written, **(kwargs if reread is None else reread))
    for again in (fresh, _dataset(tmp_path, written, like=config)):
        for i in range(len(masks)):
            torch.testing.assert_close(again[i][1], first[i][1], rtol=0, atol=0)
    return config


def test_palette_masks_with_void_255_round_trip(tmp_path: Path) -> None:
    voc = default_palette(256)  # VOC palette: void 255 is the cream (224, 224, 192) border
    paths = []
    for i in range(2):
        mask = Image.fromarray(np.roll(VOID_GT, i, axis=1))
        mask.putpalette(voc.ravel().tolist())
        (tmp_path / "masks").mkdir(exist_ok=True)
        mask.save(tmp_path / "masks" / f"{i}.png")
        paths.append(tmp_path / "masks" / f"{i}.png")
    config = _round_trip(tmp_path, paths, ignore_index=255)
    assert (config.mask_encoding, config.ignore_index) == ("palette", 255)
    with Image.open(tmp_path / "out" / "0.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), VOID_GT)  # void stays 255
    painted = colorize(VOID_GT, config)
    np.testing.assert_array_equal(painted[0, 2], (224, 224, 192))
    np.testing.assert_array_equal(painted[0, 1], voc[1])


def test_colour_masks_with_a_void_colour_round_trip(tmp_path: Path) -> None:
    # CamVid-style: void is drawn black and mapped to 255 through color_map.
    colors = {(0, 0, 0): 255, (128, 64, 128): 0, (60, 40, 222): 1, (128, 128, 0): 2}
    lut = np.zeros((256, 3), np.uint8)
    for color, cls in colors.items():
        lut[cls] = color
    paths = [write(tmp_path / "masks" / f"{i}.png", lut[np.roll(VOID_GT, i)]) for i in range(2)]
    # The palette PNG save_mask writes reads back as classes, or as colours with like=.
    config = _round_trip(tmp_path, paths, {"ignore_index": 255}, ignore_index=255, color_map=colors)
    assert config.mask_encoding == "color" and config.ignore_colors == ((0, 0, 0),)
    # colorize draws the user's own colour mask back, void included.
    np.testing.assert_array_equal(colorize(VOID_GT, config), lut[VOID_GT])
    with Image.open(tmp_path / "out" / "0.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), VOID_GT)  # void at entry 255


def test_grey_masks_with_ignore_index_round_trip(tmp_path: Path) -> None:
    levels = np.array([0, 100, 200])
    grey = [np.where(np.roll(VOID_GT, i) == 255, 255, levels[np.roll(VOID_GT, i) % 255])
            for i in range(2)]  # fmt: skip
    paths = [write(tmp_path / "masks" / f"{i}.png", g.astype(np.uint8)) for i, g in enumerate(grey)]
    config = _round_trip(tmp_path, paths, ignore_index=255)
    assert (config.mask_encoding, config.mask_values) == ("grey", (0, 100, 200))
    np.testing.assert_array_equal(to_mask_values(VOID_GT, config), grey[0])
    assert tuple(colorize(VOID_GT, config)[0, 2]) == (255, 255, 255)  # no void colour: white


def test_index_masks_with_void_11_as_fit_records_it(tmp_path: Path) -> None:
    # fit(ignore_index=11) on 0..10 index masks records 11 in the config.
    config = UNetConfig(num_classes=11, mask_encoding="index", ignore_index=11)
    gt = np.array([[0, 10, 11]], dtype=np.int64)
    save_mask(tmp_path / "m.png", gt, config)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), gt)
    assert tuple(colorize(gt, config)[0, 2]) == (255, 255, 255)


def test_overlay_leaves_void_pixels_of_a_ground_truth_mask_untinted(tmp_path: Path) -> None:
    config = UNetConfig(num_classes=3, class_colors=COLORS, ignore_index=255)
    grey = np.full((2, 3), 100, dtype=np.uint8)
    shown = np.asarray(overlay(grey, VOID_GT, config, alpha=1.0))
    for row, col in ((0, 2), (1, 1), (0, 0)):  # void twice, then background
        np.testing.assert_array_equal(shown[row, col], [100, 100, 100])
    np.testing.assert_array_equal(shown[0, 1], COLORS[1])
    np.testing.assert_array_equal(shown[1, 0], COLORS[2])
    # A config that does not know the void value (fit() on plain tensors): say it.
    bare = UNetConfig(num_classes=3, class_colors=COLORS)
    with pytest.raises(InputError, match=r"255.*ignore_index=255"):
        overlay(grey, VOID_GT, bare)
    gt = torch.from_numpy(VOID_GT.astype(np.int64))
    np.testing.assert_array_equal(np.asarray(overlay(grey, gt, bare, 1.0, ignore_index=255)), shown)
    save_overlay(tmp_path / "o.png", grey, gt, bare, 1.0, ignore_index=255)
    with Image.open(tmp_path / "o.png") as image:
        np.testing.assert_array_equal(np.asarray(image), shown)


def test_void_given_as_an_argument_and_negative_void() -> None:
    config = UNetConfig(num_classes=3, mask_encoding="grey", mask_values=(0, 100, 200))
    gt = np.array([[0, -100], [2, 1]])
    np.testing.assert_array_equal(
        to_mask_values(gt, config, ignore_index=-100), [[0, -100], [200, 100]]
    )
    assert tuple(colorize(gt, config, ignore_index=np.int64(-100))[0, 1]) == (255, 255, 255)
    # A PNG cannot hold -100: the message gives the remapping.
    with pytest.raises(InputError, match=r"-100.*mask\[mask == -100\] = 255.*ignore_index=255"):
        save_mask("unused.png", gt, config, ignore_index=-100)


@pytest.mark.parametrize(
    ("gt", "ignore_index", "match"),
    [
        (VOID_GT, None, r"0\.\.2.*found 255; pass ignore_index=255"),
        (np.array([[0, 7, 255]]), 255, r"0\.\.2 or void 255.*found 7;"),
        (VOID_GT, 1, r"ignore_index=1 is class 1"),
        (VOID_GT, "255", r"must be an integer"),
        (np.array([[0, 100]]), 100, r"ignore_index=100 is also the mask value of class 1"),
    ],
)
def test_values_neither_class_nor_void_are_refused(
    gt: np.ndarray, ignore_index: Any, match: str
) -> None:
    config = UNetConfig(num_classes=3, mask_encoding="grey", mask_values=(0, 100, 200))
    with pytest.raises(InputError, match=match):
        to_mask_values(gt, config, ignore_index=ignore_index)


def test_the_mask_passed_before_the_path_is_named(tmp_path: Path) -> None:
    # PIL and OpenCV take the destination first too; the mask first read the file name as a
    # mask "of shape ()", naming neither mistake.
    config = UNetConfig(num_classes=3)
    with pytest.raises(InputError, match=r"save_mask\(path, indices, config\) takes the dest"):
        save_mask(INDICES, tmp_path / "m.png", config)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"save_overlay\(path, image, indices, config\)"):
        save_overlay(np.zeros((2, 3), np.uint8), tmp_path / "o.png", INDICES, config)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_overlay_of_a_multi_band_image_shows_three_bands_of_the_users_choice() -> None:
    # Five or more bands were shown as the first band in grey, with no way to pick others.
    config = UNetConfig(num_classes=3, class_colors=COLORS)
    background = np.zeros((2, 3), np.uint8)
    bands = np.random.default_rng(0).integers(0, 256, (2, 3, 6), dtype=np.uint8)
    shown = np.asarray(overlay(bands, background, config))
    np.testing.assert_array_equal(shown, bands[:, :, :3])
    picked = np.asarray(overlay(bands, background, config, bands=(5, 4, 3)))
    np.testing.assert_array_equal(picked, bands[:, :, [5, 4, 3]])
    grey = np.asarray(overlay(bands, background, config, bands=[4]))
    np.testing.assert_array_equal(grey, np.repeat(bands[:, :, 4:5], 3, axis=2))
    for bad in ((6, 0, 1), (0, 1), 2, (0.5, 1, 2)):
        with pytest.raises(InputError, match=r"bands must be 1 \(grey\) or 3.*0\.\.5"):
            overlay(bands, background, config, bands=bad)  # type: ignore[arg-type]


def test_overlay_stretches_16_bit_images_too_dark_to_see() -> None:
    # 12-bit data in a 16-bit file (satellite, microscope) reaches 4095 / 65535: the
    # picture under the colours was black.
    config = UNetConfig(num_classes=3, class_colors=COLORS)
    background = np.zeros((2, 3), np.uint8)
    twelve_bit = np.array([[0, 2000, 4095], [4095, 2000, 0]], np.uint16)
    shown = np.asarray(overlay(twelve_bit, background, config))[..., 0]
    assert shown.min() == 0 and shown.max() == 255 and 100 < shown[0, 1] < 150
    bright = np.array([[0, 30000, 60000], [60000, 30000, 0]], np.uint16)  # left as it is
    shown = np.asarray(overlay(bright, background, config))[..., 0]
    np.testing.assert_array_equal(shown, np.round(bright / 65535 * 255))
