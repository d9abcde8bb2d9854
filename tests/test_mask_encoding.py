from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import blocks, codec_for, round_trip, save
from unetseg import DatasetError
from unetseg.masks import read_mask


def test_voc_style_palette_needs_ignore_index_for_255(tmp_path: Path) -> None:
    image = Image.fromarray(blocks([0, 1, 2, 255]).astype(np.uint8))
    image.putpalette(list(range(256)) * 3)
    path = tmp_path / "voc.png"
    image.save(path)
    with pytest.raises(DatasetError, match="ignore_index=255"):
        codec_for([path])
    codec = codec_for([path], ignore_index=255)
    assert codec.num_classes == 3
    classes = codec.decode(read_mask(path), "voc")
    assert set(np.unique(classes)) == {0, 1, 2, 255}  # void passes through untouched


def test_color_masks_discovered_in_sorted_order(tmp_path: Path) -> None:
    red, black, blue = (255, 0, 0), (0, 0, 0), (0, 0, 255)
    rgb = np.array([[red, black], [blue, red]], dtype=np.uint8)
    path = save(tmp_path, "c.png", rgb)
    codec = codec_for([path])
    assert codec.encoding == "color"
    assert codec.class_colors == (black, blue, red)
    assert codec.mask_values is None
    classes, back = round_trip(codec, path)
    np.testing.assert_array_equal(classes, [[2, 0], [1, 2]])
    assert back.mode == "P"  # colour masks are written back as palette PNGs of the same colours
    np.testing.assert_array_equal(np.asarray(back.convert("RGB")), rgb)


def test_color_map_dict_list_and_ignore(tmp_path: Path) -> None:
    rgb = np.array([[(255, 0, 0), (0, 0, 0), (9, 9, 9)]], dtype=np.uint8)
    path = save(tmp_path, "c.png", np.concatenate([rgb, np.full((1, 3, 1), 255, np.uint8)], 2))
    codec = codec_for(
        [path], color_map={"#ff0000": 1, (0, 0, 0): 0, (9, 9, 9): 255}, ignore_index=255
    )
    np.testing.assert_array_equal(codec.decode(read_mask(path), "c"), [[1, 0, 255]])
    assert codec.class_colors == ((0, 0, 0), (255, 0, 0))
    listed = codec_for([path], color_map=[(9, 9, 9), (0, 0, 0), (255, 0, 0)])
    np.testing.assert_array_equal(listed.decode(read_mask(path), "c"), [[2, 1, 0]])
    with pytest.raises(DatasetError, match=r"#090909.*not in color_map"):
        codec_for([path], color_map=[(0, 0, 0), (255, 0, 0)])


def test_grey_drawn_as_rgb_is_read_as_grey(tmp_path: Path) -> None:
    grey = np.repeat(blocks([0, 255]).astype(np.uint8)[:, :, None], 3, axis=2)
    codec = codec_for([save(tmp_path, "g.png", grey)])
    assert (codec.encoding, codec.mask_values) == ("binary", (0, 255))


def test_values_outside_class_names(tmp_path: Path) -> None:
    path = save(tmp_path, "m.png", blocks([0, 1, 2, 7]).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"values \[7\].*m\.png.*ignore_index=7"):
        codec_for([path], class_names=["a", "b", "c"])
    assert codec_for([path], class_names=list("abcdefgh")).encoding == "index"


def test_jpeg_masks_and_dozens_of_grey_levels_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    smooth = (np.indices((32, 32)).sum(0) * 4).astype(np.uint8)
    jpeg = save(tmp_path, "m.jpg", smooth, quality=70)
    with pytest.raises(DatasetError, match=r"JPEG.*m\.jpg.*PNG"):
        codec_for([jpeg])
    noisy = save(tmp_path, "n.png", rng.choice(np.arange(0, 250, 5), (16, 16)).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"grey levels.*PNG.*color_map"):
        codec_for([noisy])
    colorful = save(tmp_path, "c.png", rng.integers(0, 255, (12, 12, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match="distinct colours"):
        codec_for([colorful])


def test_mixed_encodings_and_single_value(tmp_path: Path) -> None:
    grey = save(tmp_path, "a.png", blocks([0, 255]).astype(np.uint8))
    rgb = save(tmp_path, "b.png", np.full((2, 2, 3), [1, 2, 3], dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"mix encodings.*b\.png.*a\.png"):
        codec_for([grey, rgb])
    zero = save(tmp_path, "z.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DatasetError, match="single value 0"):
        codec_for([zero])


def test_index_masks_with_a_void_value_ask_for_ignore_index(tmp_path: Path) -> None:
    # VOC's SegmentationClassAug: "L" PNGs of classes 0..20 with 255 borders; not JPEG noise.
    path = save(tmp_path, "voc.png", blocks([*range(21), 255]).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"indices 0\.\.20 and the value 255.*ignore_index=255"):
        codec_for([path])
    assert codec_for([path], ignore_index=255).num_classes == 21


def test_ignore_index_that_is_the_binary_foreground_is_explained(tmp_path: Path) -> None:
    path = save(tmp_path, "m.png", blocks([0, 255]).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"255.*0/255 binary.*leave ignore_index out"):
        codec_for([path], ignore_index=255)


def test_dark_grey_levels_are_read_as_grey_with_a_hint_about_class_indices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Index masks 0..10 of which these hold only 0, 1, 3, 5 and 8 look like five grey levels.
    path = save(tmp_path, "m.png", blocks([0, 1, 3, 5, 8, 0]).astype(np.uint8))
    with caplog.at_level("WARNING", logger="unetseg"):
        codec = codec_for([path])
    assert codec.encoding == "grey" and codec.num_classes == 5
    assert "class indices with some classes absent, pass class_names" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="unetseg"):
        codec = codec_for([save(tmp_path, "g.png", blocks([0, 85, 170, 255]).astype(np.uint8))])
    assert codec.encoding == "grey" and "class_names" not in caplog.text  # visible greys: no hint
    named = codec_for([path], class_names=[f"c{i}" for i in range(11)])
    assert named.encoding == "index" and named.num_classes == 11
