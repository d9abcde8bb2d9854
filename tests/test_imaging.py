import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import write_tiff
from unetseg import ImageError
from unetseg.imaging import (
    convert_channels,
    has_alpha,
    open_image,
    prepare_image,
    read_image,
    to_unit_range,
)


def test_uint16_scaled_by_its_range_not_clipped(tmp_path: Path) -> None:
    array = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    read = read_image(path)
    assert read.dtype == np.uint16
    unit = to_unit_range(read)
    np.testing.assert_allclose(unit, array / 65535.0, rtol=1e-6)
    assert len(np.unique(unit)) == 4  # nothing clipped to 8 bits


def test_float_tiff_keeps_values(tmp_path: Path) -> None:
    array = np.array([[0.0, 2.5], [-1.0, 7.0]], dtype=np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(array).save(path)
    np.testing.assert_array_equal(to_unit_range(read_image(path)), array)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[0, 0] = 255
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=100)
    assert read_image(path).shape == (20, 10, 3)


def test_palette_and_cmyk_images_become_rgb(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 3))
    palette.putpalette([10, 20, 30] * 256)
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, 4, 3)
    Image.new("CMYK", (4, 3)).save(tmp_path / "c.tif")
    assert read_image(tmp_path / "c.tif").shape == (3, 4, 3)


def test_non_image_truncated_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ImageError, match=r"notes\.png: not an image"):
        read_image(text)
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match=r"cut\.png"):
        read_image(truncated)
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_decompression_bomb_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(path)
    with pytest.raises(ImageError, match="max_pixels"):
        open_image(path, max_pixels=10_000)
    with open_image(path, max_pixels=90_000) as image:
        assert image.size == (300, 300)


@pytest.mark.parametrize(
    ("channels", "in_channels"),
    [(1, 1), (1, 3), (1, 4), (2, 1), (3, 1), (3, 3), (3, 4), (4, 1), (4, 3), (4, 4)],
)
def test_channel_conversions(channels: int, in_channels: int) -> None:
    array = np.random.default_rng(0).random((5, 6, channels), dtype=np.float32)
    out = convert_channels(array, in_channels)
    assert out.shape == (5, 6, in_channels)
    if channels == 3 and in_channels == 1:
        expected = array @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        np.testing.assert_allclose(out[:, :, 0], expected, rtol=1e-5)
    if channels == 3 and in_channels == 4:
        assert (out[:, :, 3] == 1).all()


def test_channel_mismatch_names_both_numbers() -> None:
    with pytest.raises(ImageError, match=r"5 channels.*in_channels=3"):
        convert_channels(np.zeros((4, 4, 5), np.float32), 3, name="scan.tif")


def test_prepare_image_accepts_every_form_identically(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    with Image.open(path) as pil:
        forms = [path, str(path), pil, rgb, torch.from_numpy(rgb).permute(2, 0, 1)]
        tensors = [prepare_image(f, 3, mean, std) for f in forms]
    for tensor in tensors:
        assert tensor.shape == (3, 9, 7) and tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, tensors[0])
    expected = (rgb[0, 0, 1] / 255 - 0.5) / 0.25
    assert tensors[0][1, 0, 0].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (np.zeros((0, 5)), "non-empty"),
        (np.full((3, 3), np.nan, dtype=np.float32), "NaN"),
        (np.array([["a"]]), "numeric"),
        (np.zeros((2, 2, 2, 2)), "non-empty"),
        ([1, 2, 3], "cannot use list"),
    ],
)
def test_prepare_image_bad_input(bad: object, fragment: str) -> None:
    with pytest.raises(ImageError, match=fragment):
        prepare_image(bad, 1)  # type: ignore[arg-type]


def test_npy_images_load_without_pickle(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.save(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(read_image(tmp_path / "a.npy"), array)
    assert prepare_image(tmp_path / "a.npy", 1).shape == (1, 3, 4)
    np.save(tmp_path / "evil.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match="pickle"):
        read_image(tmp_path / "evil.npy")


def test_big_endian_16_bit_tiff_is_scaled_like_little_endian(tmp_path: Path) -> None:
    # A dark 16-bit image (max <= 255) must not be mistaken for 8-bit because of byte order.
    array = np.array([[0, 100], [255, 200]], dtype=np.uint16)
    path = tmp_path / "big-endian.tif"
    Image.frombytes("I;16B", (2, 2), array.astype(">u2").tobytes()).save(path)
    read = read_image(path)
    assert read.dtype.byteorder == ">"  # as PIL decodes it
    np.testing.assert_allclose(to_unit_range(read), array / 65535.0, rtol=1e-6)


def test_prepare_image_takes_bfloat16_tensors_and_read_only_arrays() -> None:
    grey = np.random.default_rng(2).random((5, 6)).astype(np.float32)
    bf16 = torch.from_numpy(grey)[None].to(torch.bfloat16)
    torch.testing.assert_close(prepare_image(bf16, 1), bf16.float())
    # A PIL "F" image is a read-only float32 array: wrapping it as is makes torch warn.
    pil = Image.fromarray(grey, mode="F")
    tensor = prepare_image(pil, 1)
    assert tensor.numpy().flags.writeable
    np.testing.assert_array_equal(tensor[0].numpy(), grey)


def _no_tifffile(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def refuse(name: str, *args: Any) -> Any:
        if name == "tifffile":
            raise ImportError("No module named 'tifffile'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", refuse)


def test_multi_page_tiff_of_single_bands_reads_one_channel_per_page(tmp_path: Path) -> None:
    # Pillow gives the first page alone: a 4-band stack trained as a 1-channel image.
    bands = np.random.default_rng(0).integers(0, 4096, (4, 6, 5), dtype=np.uint16)
    path = tmp_path / "stack.tif"
    pages = [Image.fromarray(band) for band in bands]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    np.testing.assert_array_equal(read_image(path), bands.transpose(1, 2, 0))
    thumb = tmp_path / "with_thumbnail.tif"  # a smaller page is an overview, not a band
    pages[0].save(thumb, save_all=True, append_images=[pages[1].resize((2, 3))])
    np.testing.assert_array_equal(read_image(thumb), bands[0])


@pytest.mark.parametrize("planar", [False, True])
def test_tiffs_pillow_misreads_are_refused_with_the_fix_not_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planar: bool
) -> None:
    # 16-bit RGB came back as its high bytes (12-bit data as 0..15), RGB + near-infrared
    # lost its fourth band, planar 16-bit bands raised a raw ValueError, 6 bands could not
    # be opened ("convert it to PNG", which cannot hold them).
    _no_tifffile(monkeypatch)
    rng = np.random.default_rng(1)
    for array in (
        rng.integers(0, 4096, (6, 5, 3), dtype=np.uint16),
        rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
        rng.integers(0, 4096, (6, 5, 4), dtype=np.uint16),
        rng.random((6, 5, 6), dtype=np.float32),
    ):
        path = write_tiff(tmp_path / "bands.tif", array, planar=planar)
        with pytest.raises(ImageError, match=r"bands\.tif: a TIFF of .*pip install tifffile.*npy"):
            read_image(path)
    rgba = write_tiff(tmp_path / "rgba.tif", rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
                      alpha=True)  # fmt: skip
    assert read_image(rgba).shape == (6, 5, 4) and has_alpha(rgba)  # Pillow reads RGBA


@pytest.mark.parametrize("planar", [False, True])
def test_tifffile_reads_multi_band_tiffs_exactly(tmp_path: Path, planar: bool) -> None:
    pytest.importorskip("tifffile")
    rng = np.random.default_rng(2)
    for array in (
        rng.integers(0, 4096, (6, 5, 3), dtype=np.uint16),
        rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
        rng.random((6, 5, 12), dtype=np.float32),
    ):
        path = write_tiff(tmp_path / "bands.tif", array, planar=planar)
        np.testing.assert_array_equal(read_image(path), array)
        assert not has_alpha(path)


def test_only_files_that_say_so_have_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgba[:, :, :2]).save(tmp_path / "la.png")  # mode LA
    Image.fromarray(rgba[:, :, :3]).save(tmp_path / "rgb.png")
    np.save(tmp_path / "bands.npy", rgba)
    found = {name: has_alpha(tmp_path / name) for name in ("rgba.png", "la.png", "rgb.png")}
    assert found == {"rgba.png": True, "la.png": True, "rgb.png": False}
    assert not has_alpha(tmp_path / "bands.npy")
