from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from unetseg import DatasetError, ImageError
from unetseg.masks import (
    MaskCodec,
    build_codec,
    default_colors,
    read_mask,
    render_mask,
    scan_header,
    summarize,
)


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
    back = render_mask(
        classes,
        mask_encoding=codec.encoding,
        mask_values=codec.mask_values,
        class_colors=codec.class_colors,
    )
    return classes, back


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
    assert back.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(back), rgb)


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


def test_ignore_index_is_not_a_class(tmp_path: Path) -> None:
    array = blocks([*range(11), 255]).astype(np.uint8)
    path = save(tmp_path, "m.png", array)
    codec = codec_for([path], ignore_index=255)
    assert (codec.encoding, codec.num_classes) == ("index", 11)
    classes = codec.decode(read_mask(path), "m")
    np.testing.assert_array_equal(classes, array)
    with pytest.raises(DatasetError, match="ignore_index=0 is also class 0"):
        codec_for([save(tmp_path, "n.png", blocks([0, 1, 2]).astype(np.uint8))], ignore_index=0)


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


def test_render_mask_sixteen_bit_and_errors() -> None:
    back = render_mask(np.array([[0, 1]]), mask_encoding="grey", mask_values=(0, 40000))
    assert back.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(back), [[0, 40000]])
    index = render_mask(np.array([[0, 3]]), mask_encoding=None)
    np.testing.assert_array_equal(np.asarray(index), [[0, 3]])
    with pytest.raises(ValueError, match="class_colors"):
        render_mask(np.zeros((2, 2)), mask_encoding="color")
    assert default_colors(3) == ((0, 0, 0), (128, 0, 0), (0, 128, 0))


def test_grey_rgb_files_mix_with_grey_files(tmp_path: Path) -> None:
    grey = save(tmp_path, "a.png", blocks([0, 255]).astype(np.uint8))
    rgb = save(tmp_path, "b.png", np.repeat(blocks([255, 0]).astype(np.uint8)[:, :, None], 3, 2))
    codec = codec_for([grey, rgb])
    assert codec.encoding == "binary"
    np.testing.assert_array_equal(
        codec.decode(read_mask(rgb), "b"), blocks([255, 0]).astype(np.uint8) // 255
    )
