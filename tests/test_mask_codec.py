from pathlib import Path

import numpy as np
import pytest

from helpers import blocks, codec_for, round_trip, save
from unetseg import DatasetError
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
