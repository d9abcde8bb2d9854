from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import blocks, codec_for, round_trip, save
from unetseg import DatasetError, UNetConfig
from unetseg.mask_codec import MaskCodec
from unetseg.masks import read_mask, summarize


@pytest.mark.parametrize(
    ("values", "encoding", "mask_values"),
    [
        ([0, 1, 2, 3], "index", (0, 1, 2, 3)),
        ([0, 255], "binary", (0, 255)),
        ([0, 1], "binary", (0, 1)),
        ([0, 128, 255], "grey", (0, 128, 255)),
        ([10, 20, 30, 40, 50], "grey", (10, 20, 30, 40, 50)),
    ],
)
def test_scalar_encodings_round_trip(
    tmp_path: Path, values: list[int], encoding: str, mask_values: tuple[int, ...]
) -> None:
    array = blocks(values).astype(np.uint8)
    path = save(tmp_path, "m.png", array)
    codec = codec_for([path])
    assert (codec.encoding, codec.mask_values) == (encoding, mask_values)
    classes, back = round_trip(codec, path)
    lookup = {v: i for i, v in enumerate(mask_values)}
    np.testing.assert_array_equal(classes, np.vectorize(lookup.get)(array))
    assert back.mode == "L"
    np.testing.assert_array_equal(np.asarray(back), array)


def test_binary_names_and_counts(tmp_path: Path) -> None:
    path = save(tmp_path, "m.png", np.array([[0, 255, 255, 255]], dtype=np.uint8))
    codec = codec_for([path])
    assert codec.class_names == ("background", "foreground")
    counts = codec.class_counts(summarize(read_mask(path), "m"))
    np.testing.assert_array_equal(counts, [1, 3])


def test_ignore_index_is_not_a_class(tmp_path: Path) -> None:
    array = blocks([*range(11), 255]).astype(np.uint8)
    path = save(tmp_path, "m.png", array)
    codec = codec_for([path], ignore_index=255)
    assert (codec.encoding, codec.num_classes) == ("index", 11)
    classes = codec.decode(read_mask(path), "m")
    np.testing.assert_array_equal(classes, array)
    with pytest.raises(DatasetError, match="ignore_index=0 is also class 0"):
        codec_for([save(tmp_path, "n.png", blocks([0, 1, 2]).astype(np.uint8))], ignore_index=0)


def test_grey_rgb_files_mix_with_grey_files(tmp_path: Path) -> None:
    grey = save(tmp_path, "a.png", blocks([0, 255]).astype(np.uint8))
    rgb = save(tmp_path, "b.png", np.repeat(blocks([255, 0]).astype(np.uint8)[:, :, None], 3, 2))
    codec = codec_for([grey, rgb])
    assert codec.encoding == "binary"
    np.testing.assert_array_equal(
        codec.decode(read_mask(rgb), "b"), blocks([255, 0]).astype(np.uint8) // 255
    )


def _colour_config() -> UNetConfig:
    colours = ((0, 0, 0), (255, 0, 0), (0, 255, 0))
    return UNetConfig(num_classes=3, mask_encoding="color", class_colors=colours)


def test_a_colour_codec_from_config_reads_palette_masks_by_their_colours(tmp_path: Path) -> None:
    # The palette orders the colours unlike the config: indices must go through colours.
    classes = blocks([0, 1, 2, 1])
    picture = Image.fromarray(np.array([1, 2, 0], np.uint8)[classes], mode="P")
    picture.putpalette([0, 255, 0, 0, 0, 0, 255, 0, 0])
    picture.save(tmp_path / "p.png")
    raw = read_mask(tmp_path / "p.png")
    assert raw.kind == "palette"
    codec = MaskCodec.from_config(_colour_config())
    np.testing.assert_array_equal(codec.decode(raw, "p.png"), classes)
    np.testing.assert_array_equal(codec.class_counts(summarize(raw, "p")), [12, 24, 12])
    # A palette colour the model does not know is named as a colour.
    picture.putpalette([0, 0, 255, 0, 0, 0, 255, 0, 0])
    picture.save(tmp_path / "q.png")
    with pytest.raises(DatasetError, match=r"q\.png.*#0000ff.*model's classes"):
        codec.decode(read_mask(tmp_path / "q.png"), "q.png")


def test_a_colour_codec_from_config_refuses_single_channel_masks(tmp_path: Path) -> None:
    path = save(tmp_path, "g.png", blocks([0, 1, 2]).astype(np.uint8))
    codec = MaskCodec.from_config(_colour_config())
    with pytest.raises(DatasetError, match=r"g\.png: a single-channel mask.*training colours"):
        codec.decode(read_mask(path), "g.png")


def test_a_scalar_codec_from_config_reads_grey_rgb_masks(tmp_path: Path) -> None:
    config = UNetConfig(num_classes=3, mask_encoding="grey", mask_values=(0, 128, 255))
    codec = MaskCodec.from_config(config)
    grey = blocks([255, 0, 128]).astype(np.uint8)
    path = save(tmp_path, "rgb.png", np.repeat(grey[:, :, None], 3, 2))
    raw = read_mask(path)
    assert raw.kind == "color"
    np.testing.assert_array_equal(codec.decode(raw, "rgb.png"), grey // 127)
    np.testing.assert_array_equal(codec.class_counts(summarize(raw, "rgb")), [16, 16, 16])
    colour = np.repeat(grey[:, :, None], 3, 2)
    colour[0, 0] = (255, 0, 0)
    path = save(tmp_path, "colour.png", colour)
    with pytest.raises(DatasetError, match=r"colour\.png: an RGB colour mask.*grey masks"):
        codec.decode(read_mask(path), "colour.png")
    # A codec learned from data keeps refusing what it did not see at construction.
    built = codec_for([save(tmp_path, "l.png", grey)])
    unknown = save(tmp_path, "m.png", np.array([[7, 0], [9, 7]], np.uint8))
    with pytest.raises(DatasetError, match=r"value\(s\) 7, 9 are not.*rebuild the data set"):
        built.decode(read_mask(unknown), "m")
