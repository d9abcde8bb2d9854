"""The real path a user takes: a folder on disk -> fit() -> save_pretrained ->
from_pretrained -> segment() -> masks written back in the user's own encoding."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import unetseg
from unetseg import SegmentationDataset, UNet, fit, segment
from unetseg.metrics import confusion_matrix, scores_from_confusion

RED, BLUE = (220, 30, 30), (30, 30, 220)


def scene(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a bright square and a dark disc; colour mask red/blue on black."""
    image = np.full((size, size), 120, np.uint8) + rng.integers(0, 20, (size, size), np.uint8)
    mask = np.zeros((size, size, 3), np.uint8)
    top, left = rng.integers(2, size // 2, size=2)
    image[top : top + 10, left : left + 10] = 230
    mask[top : top + 10, left : left + 10] = RED
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(6, size - 6, size=2)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 16
    image[disc] = 15
    mask[disc] = BLUE
    return image, mask


def write_folder(root: Path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image, mask = scene(rng)
        Image.fromarray(image).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}_mask.png")


def test_folder_to_fit_to_checkpoint_to_segment(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", 12, seed=0)
    write_folder(tmp_path / "test", 4, seed=1)
    data = SegmentationDataset(tmp_path / "train" / "images", tmp_path / "train" / "masks")
    assert data.config_fields()["mask_encoding"] == "color"

    torch.manual_seed(0)
    model = UNet(
        in_channels=data.in_channels, num_classes=data.num_classes, base_channels=8, depth=2
    )
    history = fit(
        model, data, val_data=0.25, epochs=25, batch_size=3, patch_size=32, progress=False
    )
    assert history.epochs and model.config.class_colors is not None
    assert model.config.tta_flips == ("horizontal",)  # the default augmentation's flips

    model.save_pretrained(tmp_path / "model")
    loaded = UNet.from_pretrained(tmp_path / "model")
    assert loaded.config == model.config

    test = SegmentationDataset(
        tmp_path / "test" / "images", tmp_path / "test" / "masks", like=loaded
    )
    confusion = torch.zeros(3, 3, dtype=torch.int64)
    for index, (image_path, _) in enumerate(test.paths):
        assert image_path is not None
        prediction = segment(tmp_path / "model", image_path, progress=False)
        assert prediction.shape == (32, 32) and prediction.dtype == np.uint8
        confusion += confusion_matrix(torch.from_numpy(prediction).long(), test[index][1], 3)
    assert scores_from_confusion(confusion).pixel_accuracy > 0.9  # it learned the scenes

    unetseg.save_mask(tmp_path / "out.png", prediction, loaded)
    written = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).reshape(-1, 3)
    assert {tuple(c) for c in written} <= {(0, 0, 0), RED, BLUE}  # the user's own colours


def test_real_membrane_slices_round_trip_as_0_255(isbi_dir: Path, tmp_path: Path) -> None:
    images = sorted((isbi_dir / "images").glob("*.png"))[:3]
    masks = [isbi_dir / "masks" / p.name for p in images]
    data = SegmentationDataset(images, masks)
    torch.manual_seed(0)
    model = UNet(in_channels=1, num_classes=2, base_channels=4, depth=2)
    fit(model, data, epochs=1, batch_size=2, patch_size=64, progress=False)
    model.save_pretrained(tmp_path / "membranes")
    prediction = segment(tmp_path / "membranes", images[0], progress=False)
    assert prediction.shape == (512, 512)
    unetseg.save_mask(tmp_path / "m.png", prediction, UNet.from_pretrained(tmp_path / "membranes"))
    assert set(np.unique(np.asarray(Image.open(tmp_path / "m.png")))) <= {0, 255}
