from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import blocks, codec_for, round_trip, save
from unetseg import ImageError, UNetConfig
from unetseg.masks import mask_from_array, pack_colors, read_mask, scan_header, summarize
from unetseg.visualize import mask_image


def test_sixteen_bit_masks(tmp_path: Path) -> None:
    grey = blocks([0, 1000, 2000]).astype(np.uint16)
    path = save(tmp_path, "g.png", grey)
    assert read_mask(path).array.dtype == np.uint16
    codec = codec_for([path])
    assert (codec.encoding, codec.mask_values) == ("grey", (0, 1000, 2000))
    _, back = round_trip(codec, path)
    np.testing.assert_array_equal(np.asarray(back), grey)
    index = save(tmp_path, "i.tif", blocks([0, 1, 2]).astype(np.uint16))
    assert codec_for([index]).encoding == "index"


def test_palette_masks_read_indices_not_luminance(tmp_path: Path) -> None:
    indices = blocks([0, 1, 2]).astype(np.uint8)
    image = Image.fromarray(indices)
    colors = [(0, 0, 0), (200, 10, 10), (10, 200, 10)]
    image.putpalette([c for rgb in colors for c in rgb])
    path = tmp_path / "p.png"
    image.save(path)
    codec = codec_for([path])
    assert codec.encoding == "palette"
    assert codec.class_colors == tuple(colors)
    classes, back = round_trip(codec, path)
    np.testing.assert_array_equal(classes, indices)
    assert back.mode == "P"
    np.testing.assert_array_equal(np.asarray(back), indices)
    assert back.getpalette()[:9] == [c for rgb in colors for c in rgb]


def test_npy_masks_and_pickles(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", blocks([0, 1, 2]).astype(np.int32))
    assert codec_for([tmp_path / "m.npy"]).encoding == "index"
    assert scan_header(tmp_path / "m.npy").size == (8, 6)
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match=r"p\.npy.*pickle"):
        scan_header(tmp_path / "p.npy")
    with pytest.raises(ImageError, match=r"p\.npy.*pickle"):
        read_mask(tmp_path / "p.npy")


def test_float_masks_must_be_integer_valued(tmp_path: Path) -> None:
    path = save(tmp_path, "f.tif", np.array([[0.0, 0.5]], dtype=np.float32))
    with pytest.raises(ImageError, match="non-integer"):
        read_mask(path)


def test_sixteen_bit_grey_values_are_written_back_as_sixteen_bit() -> None:
    config = UNetConfig(num_classes=2, mask_encoding="grey", mask_values=(0, 40000))
    back = mask_image(np.array([[0, 1]]), config)
    assert back.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(back), [[0, 40000]])


def test_one_hot_arrays_are_refused_not_read_as_colours() -> None:
    # (H, W, 3) one-hot would be 3 near-black "colours" numbered in reversed class order.
    classes = np.array([[0, 1], [2, 0]])
    with pytest.raises(ImageError, match=r"one-hot.*argmax"):
        mask_from_array(np.eye(3, dtype=np.uint8)[classes])
    with pytest.raises(ImageError, match=r"one-hot.*argmax"):
        mask_from_array(np.eye(4, dtype=bool)[classes])
    grey = mask_from_array(np.repeat(classes[:, :, None] % 2, 3, axis=2).astype(np.uint8))
    assert grey.kind == "color"  # a 0/1 mask saved with three equal channels stays readable


def test_lossless_webp_masks_are_not_taken_for_lossy_ones(tmp_path: Path) -> None:
    grey = blocks([0, 100, 200]).astype(np.uint8)
    rgba = np.dstack([np.repeat(grey[:, :, None], 3, 2), np.full(grey.shape, 200, np.uint8)])
    exif = Image.Exif()
    exif[0x0112] = 1
    for name, array, options in (
        ("lossless.webp", grey, {"lossless": True}),
        ("extended.webp", rgba, {"lossless": True, "exif": exif.tobytes()}),  # VP8X + VP8L
    ):
        raw = read_mask(save(tmp_path, name, array, **options))
        assert not raw.lossy
    for name, array in (("lossy.webp", grey), ("alpha.webp", rgba)):  # VP8, VP8X + ALPH + VP8
        assert read_mask(save(tmp_path, name, array, quality=90)).lossy
    assert codec_for([save(tmp_path, "m.webp", grey, lossless=True)]).num_classes == 3


def test_colour_masks_are_read_as_indices_into_their_colours(tmp_path: Path) -> None:
    # One byte a pixel instead of a packed uint32: a quarter of the memory, and the codec
    # maps each colour once instead of each pixel.
    colours = np.array([(0, 0, 0), (250, 0, 3), (7, 200, 9), (0, 0, 255)], np.uint8)
    rgb = colours[blocks([2, 0, 1, 3, 1], (8, 10))]
    for path in (
        save(tmp_path, "c.png", rgb),
        save(tmp_path, "a.png", np.dstack([rgb, rgb[..., :1]])),
    ):
        raw = read_mask(path)
        assert (raw.kind, raw.array.dtype, raw.array.shape) == ("color", np.uint8, (8, 10))
        assert raw.values is not None and raw.counts is not None
        np.testing.assert_array_equal(raw.values, np.sort(pack_colors(colours)))
        np.testing.assert_array_equal(raw.values[raw.array], pack_colors(rgb))
        assert summarize(raw, "c").counts == {0: 16, 0x0000FF: 16, 0x07C809: 16, 0xFA0003: 32}
    np.testing.assert_array_equal(mask_from_array(rgb).array, read_mask(path).array)
    large = np.tile(rgb, (40, 30, 1))  # 320x300: indexed through a table of every colour
    raw = mask_from_array(large)
    assert raw.values is not None and raw.array.dtype == np.uint8
    np.testing.assert_array_equal(raw.values[raw.array], pack_colors(large))
    # Too many colours for a byte (a JPEG-compressed mask): kept packed, counted the same.
    many = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    raw = mask_from_array(many)
    assert raw.values is None and raw.array.dtype == np.uint32
    np.testing.assert_array_equal(raw.array, pack_colors(many))
    assert sum(summarize(raw, "m").counts.values()) == 400
