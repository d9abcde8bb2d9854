from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import make_folder, write
from unetseg import DatasetError, SegmentationDataset
from unetseg.pairing import pair_files


def test_folder_pairing_tolerates_suffixes_extensions_and_hidden_files(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, n=3)
    (images / ".DS_Store").write_bytes(b"\0\1junk")
    (masks / "._00_mask.png").write_bytes(b"resource fork")
    (images / "notes.txt").write_text("ignored")
    pairs = pair_files(images, masks)
    assert [(i.name, m.name) for i, m in pairs] == [
        ("00.jpg", "00_mask.png"),
        ("01.jpg", "01_mask.png"),
        ("02.jpg", "02_mask.png"),
    ]
    ds = SegmentationDataset(images, masks)
    assert len(ds) == 3 and ds.paths[0] == pairs[0]
    image, mask = ds[0]
    assert image.shape == (3, 12, 16) and image.dtype == torch.float32
    assert mask.shape == (12, 16) and mask.dtype == torch.int64
    assert ds.config_fields()["mask_encoding"] == "binary"


def test_empty_and_hidden_only_folders(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"images holds no image files.*\.DS_Store"):
        SegmentationDataset(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(DatasetError, match="does not exist"):
        SegmentationDataset(tmp_path / "nope", tmp_path / "masks")


def test_unmatched_and_duplicate_stems_are_listed(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, n=3)
    (masks / "01_mask.png").unlink()
    write(masks / "07.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(DatasetError, match=r"without a mask.*01\.jpg.*without an image.*07\.png"):
        SegmentationDataset(images, masks)
    write(masks / "01.png", np.zeros((12, 16), np.uint8))
    (masks / "07.png").unlink()
    write(images / "00.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(DatasetError, match=r"00\.jpg \+ 00\.png"):
        SegmentationDataset(images, masks)


def test_identical_stems_pair_even_when_they_end_like_a_suffix(tmp_path: Path) -> None:
    # "scan_raw" and "cell_seg" end like an image / mask suffix; stripping them would leave
    # both files unmatched. CamVid's colour labels carry "_L".
    blank = np.zeros((4, 4), np.uint8)
    for name in ("scan_raw", "cell_seg", "0001TP_006690"):
        write(tmp_path / "images" / f"{name}.png", blank)
    for name in ("scan_raw", "cell_seg", "0001TP_006690_L"):
        write(tmp_path / "masks" / f"{name}.png", blank)
    pairs = pair_files(tmp_path / "images", tmp_path / "masks")
    assert [(i.stem, m.stem) for i, m in pairs] == [
        ("0001TP_006690", "0001TP_006690_L"),
        ("cell_seg", "cell_seg"),
        ("scan_raw", "scan_raw"),
    ]


def test_one_folder_of_images_and_suffixed_masks_pairs_them(tmp_path: Path) -> None:
    # The Kaggle brain-MRI layout: x.tif beside x_mask.tif, the same folder passed twice.
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 255
    for stem in ("a", "b"):
        write(tmp_path / "both" / f"{stem}.tif", np.zeros((4, 4, 3), np.uint8))
        write(tmp_path / "both" / f"{stem}_mask.tif", mask)
    pairs = pair_files(tmp_path / "both", str(tmp_path / "both"))
    assert [(i.name, m.name) for i, m in pairs] == [
        ("a.tif", "a_mask.tif"),
        ("b.tif", "b_mask.tif"),
    ]
    assert SegmentationDataset(tmp_path / "both", tmp_path / "both").num_classes == 2
    write(tmp_path / "plain" / "a.png", mask)
    with pytest.raises(DatasetError, match=r"both read from .*plain.*0 of its 1 files"):
        pair_files(tmp_path / "plain", tmp_path / "plain")


def test_image_tensors_are_channels_first_as_in_segment() -> None:
    mask = torch.zeros(5, 7, dtype=torch.int64)
    mask[0] = 1
    image = torch.rand(3, 5, 7)
    data = SegmentationDataset([image], [mask], mean=[0, 0, 0], std=[1, 1, 1])
    assert data.in_channels == 3
    torch.testing.assert_close(data[0][0], image)
