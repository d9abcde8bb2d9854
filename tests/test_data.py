import json
import pickle
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import blocks, make_folder, write, write_tiff
from unetseg import Augment, DatasetError, SegmentationDataset, UNet, UNetConfig, _store


def test_size_mismatch_after_exif_orientation(tmp_path: Path) -> None:
    photo = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = photo.getexif()
    exif[0x0112] = 6  # displayed rotated: 10 wide, 20 tall
    photo.save(tmp_path / "p.jpg", exif=exif)
    upright = write(tmp_path / "upright.png", np.tile([0, 255], (20, 5)).astype(np.uint8))
    ds = SegmentationDataset([tmp_path / "p.jpg"], [upright])
    assert ds[0][0].shape == (3, 20, 10)
    raw = write(tmp_path / "raw.png", np.tile([0, 255], (10, 10)).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"p\.jpg is 10x20 but .*raw\.png is 20x10"):
        SegmentationDataset([tmp_path / "p.jpg"], [raw])


def test_corrupt_truncated_non_image_and_bomb_files(tmp_path: Path) -> None:
    mask = write(tmp_path / "m.png", np.tile([0, 255], (16, 8)).astype(np.uint8))
    good = write(tmp_path / "g.png", np.zeros((16, 16), np.uint8))
    text = tmp_path / "text.png"
    text.write_text("not an image")
    with pytest.raises(DatasetError, match=r"text\.png: not an image"):
        SegmentationDataset([text], [mask])
    noisy = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    full = write(tmp_path / "full.png", noisy).read_bytes()
    (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])
    with pytest.raises(DatasetError, match=r"cut\.png.*truncated"):
        SegmentationDataset([tmp_path / "cut.png"], [mask])
    with pytest.raises(DatasetError, match=r"g\.png.*max_pixels=100"):
        SegmentationDataset([good], [mask], max_pixels=100)


def test_pickled_npy_fails_cleanly(tmp_path: Path) -> None:
    np.save(tmp_path / "img.npy", np.zeros((4, 4), np.float32))
    np.save(tmp_path / "m.npy", np.array([None, {"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=r"m\.npy.*pickle"):
        SegmentationDataset([tmp_path / "img.npy"], [tmp_path / "m.npy"])
    np.save(tmp_path / "m.npy", np.eye(4, dtype=np.uint8))
    ds = SegmentationDataset([tmp_path / "img.npy"], [tmp_path / "m.npy"])
    assert ds.config_fields()["mask_encoding"] == "binary"


def test_mask_value_problems_name_files(tmp_path: Path) -> None:
    image = np.zeros((8, 8), np.uint8)
    jpeg = write(tmp_path / "m.jpg", (np.indices((8, 8)).sum(0) * 16).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"JPEG.*m\.jpg.*PNG"):
        SegmentationDataset([image], [jpeg])
    three = np.resize(np.arange(3, dtype=np.uint8), (8, 8))
    with pytest.raises(DatasetError, match="outside the 2 classes"):
        SegmentationDataset([image], [three + 5], class_names=["a", "b"])


def test_numpy_inputs_colour_masks_and_stacks() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 8, 10, 3), dtype=np.uint8)
    colours = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0)], np.uint8)
    labels = rng.integers(0, 3, (3, 8, 10))
    ds = SegmentationDataset(images, [colours[c] for c in labels])
    assert ds.num_classes == 3 and ds.in_channels == 3
    assert ds.config_fields()["class_colors"] == ((0, 0, 0), (0, 255, 0), (255, 0, 0))
    remap = np.array([0, 2, 1])  # sorted colour order: black, green, red
    np.testing.assert_array_equal(ds[1][1].numpy(), remap[labels[1]])
    with pytest.raises(DatasetError, match="3 images but 2 masks"):
        SegmentationDataset(list(images), list(labels[:2]))
    with pytest.raises(DatasetError, match="same way"):
        SegmentationDataset(images, "masks/")


def test_mean_std_measured_or_given_and_recorded() -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    masks = [rng.integers(0, 2, (16, 16)) for _ in range(3)]
    ds = SegmentationDataset(images, masks)
    unit = np.stack(images) / 255.0
    np.testing.assert_allclose(ds.mean, unit.reshape(-1, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(ds.std, unit.reshape(-1, 3).std(0), rtol=1e-5)
    np.testing.assert_allclose(ds[0][0].mean(dim=(1, 2)), 0.0, atol=0.3)
    given = SegmentationDataset(images, masks, mean=[0.5] * 3, std=[0.25] * 3)
    expected = (torch.from_numpy(images[0] / 255.0).permute(2, 0, 1).float() - 0.5) / 0.25
    torch.testing.assert_close(given[0][0], expected)
    with pytest.raises(DatasetError, match="3 finite numbers"):
        SegmentationDataset(images, masks, mean=[0.5], std=[0.2])
    with pytest.raises(DatasetError, match="together"):
        SegmentationDataset(images, masks, mean=[0.5] * 3)


def test_channels_inferred_mixed_refused_or_converted(tmp_path: Path) -> None:
    grey = np.zeros((6, 6), np.uint8)
    rgba = np.zeros((6, 6, 4), np.uint8)
    mask = np.tile([0, 1], (6, 3))
    assert SegmentationDataset([rgba], [mask]).in_channels == 4  # arrays: bands, not alpha
    with pytest.raises(DatasetError, match=r"disagree on channels.*in_channels=3"):
        SegmentationDataset([grey, rgba], [mask, mask])
    ds = SegmentationDataset([grey, rgba], [mask, mask], in_channels=3)
    assert ds[0][0].shape == (3, 6, 6)
    with pytest.raises(DatasetError, match="5 channels"):
        SegmentationDataset([np.zeros((6, 6, 5), np.uint8)], [mask], in_channels=3)


def test_sixteen_bit_and_float_tiff_images(tmp_path: Path) -> None:
    deep = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    path = write(tmp_path / "d.png", deep)
    ds = SegmentationDataset([path], [mask], mean=[0.0], std=[1.0])
    np.testing.assert_allclose(ds[0][0][0].numpy(), deep / 65535.0, rtol=1e-6)
    floats = write(tmp_path / "f.tif", np.array([[0.0, 2.5], [-1.0, 7.0]], np.float32))
    ds = SegmentationDataset([floats], [mask], mean=[0.0], std=[1.0])
    np.testing.assert_array_equal(ds[0][0][0].numpy(), [[0.0, 2.5], [-1.0, 7.0]])


def test_cache_budget_does_not_change_items(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, n=3)
    cached = SegmentationDataset(images, masks)
    uncached = SegmentationDataset(images, masks, cache_bytes=0)
    assert "0/3 images" in uncached.describe()
    augmented = [d.with_augment(Augment(patch_size=8)) for d in (cached, uncached)]
    for i in range(3):
        torch.testing.assert_close(cached[i], uncached[i])
        torch.testing.assert_close(augmented[0][(i, i)], augmented[1][(i, i)])


@pytest.mark.parametrize(
    ("masks", "reads"),
    [
        # Held as read while they fit, mapped once the mapping is known; the rest were
        # read a second time for nothing.
        ("grey", [1, 1, 1, 1]),
        # Colour masks were held as uint32, four times their classes: none fitted here.
        ("colour", [1, 1, 1, 1]),
        # 16-bit masks are twice their classes: one is held, a second is read again to
        # fill the cache.
        ("16-bit", [1, 2, 1, 1]),
        # With the mapping given, each mask is mapped as it is read.
        ("grey, like=", [1, 1, 1, 1]),
    ],
)
def test_masks_are_read_once_at_construction_unless_read_again_to_fill_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, masks: str, reads: list[int]
) -> None:
    images, folder = make_folder(tmp_path, n=4)  # 12x16 masks: 192 bytes of classes each
    for path in folder.iterdir():
        mask = np.asarray(Image.open(path))
        if masks == "colour":
            write(path, np.array([(9, 9, 9), (200, 0, 0)], np.uint8)[mask // 255])
        elif masks == "16-bit":
            write(path, (mask // 255).astype(np.uint16) * 1000)
    reference = SegmentationDataset(images, folder)
    like = reference if masks.endswith("like=") else None
    counted: dict[str, int] = {}
    original = _store.read_mask

    def counting(path: Path, **kwargs: Any) -> Any:
        counted[Path(path).name] = counted.get(Path(path).name, 0) + 1
        return original(path, **kwargs)

    monkeypatch.setattr(_store, "read_mask", counting)
    ds = SegmentationDataset(images, folder, cache_bytes=2 * 192, like=like)
    assert [counted[f"{i:02d}_mask.png"] for i in range(4)] == reads
    assert "2/4 masks" in ds.describe()
    for i in range(4):
        torch.testing.assert_close(ds[i], reference[i])


def test_image_arrays_given_take_no_cache_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A uint8 array is served as given; charging it to the budget crowded out the files.
    given = np.zeros((8, 8, 3), np.uint8)
    path = write(tmp_path / "b.png", np.full((8, 8, 3), 9, np.uint8))
    mask = blocks([0, 1], (8, 8)).astype(np.uint8)  # 64 bytes decoded
    ds = SegmentationDataset([given, path], [mask, mask], cache_bytes=2 * 64 + 192)
    assert "2/2 images and 2/2 masks in memory (0.0 MiB" in ds.describe()
    reads: list[Path] = []
    monkeypatch.setattr(_store, "read_image", lambda p, **kw: reads.append(p))
    assert ds[1][0].shape == (3, 8, 8) and ds[0][0].shape == (3, 8, 8)
    assert reads == []  # the file's image stayed decoded


def test_images_beyond_the_cache_are_decoded_once_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, masks = make_folder(tmp_path, n=3)
    cached = SegmentationDataset(images, masks)
    reads: list[str] = []
    original = _store.read_image

    def counting(path: Path, **kwargs: Any) -> Any:
        reads.append(Path(path).name)
        return original(path, **kwargs)

    monkeypatch.setattr(_store, "read_image", counting)
    uncached = SegmentationDataset(images, masks, cache_bytes=0)
    assert sorted(reads) == ["00.jpg", "01.jpg", "02.jpg"]  # mean/std measured on the way
    assert (uncached.mean, uncached.std) == (cached.mean, cached.std)
    grey = SegmentationDataset(images, masks, cache_bytes=0, in_channels=1)
    assert len(grey.mean) == 1 and len(reads) == 6
    grey_alpha, mask = np.zeros((8, 8, 2), np.uint8), blocks([0, 1], (8, 8)).astype(np.uint8)
    with pytest.raises(ValueError, match="2 channels"):  # not measured without its pixels
        SegmentationDataset([grey_alpha], [mask], in_channels=4)


def test_reading_shows_bars_that_progress_false_switches_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks = make_folder(tmp_path, n=2)
    SegmentationDataset(images, masks)
    assert "reading" not in capsys.readouterr().err  # quick reads: no bar flashes by
    monkeypatch.setattr(_store, "_PROGRESS_DELAY", 0.0)
    SegmentationDataset(images, masks)
    err = capsys.readouterr().err
    assert "reading masks" in err and "mapping masks" in err and "reading images" in err
    SegmentationDataset(images, masks, progress=False)
    assert "reading" not in capsys.readouterr().err


def test_split_views_inspection_and_config(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, n=10, rgb=False)
    ds = SegmentationDataset(images, masks, class_names=["sky", "ground"])
    train, val = ds.split(val_fraction=0.3, seed=4)
    assert len(train) == 7 and len(val) == 3
    names = {p[0] for p in train.paths} | {p[0] for p in val.paths}
    assert len(names) == 10
    assert [p[0] for p in ds.split(0.3, seed=4)[1].paths] == [p[0] for p in val.paths]
    np.testing.assert_allclose(ds.class_frequencies(), [0.5, 0.5])
    config = UNetConfig(in_channels=1, base_channels=4, depth=1).replace(**ds.config_fields())
    assert config.class_names == ("sky", "ground") and config.mask_values == (0, 255)
    text = ds.describe()
    assert "10 samples" in text and "binary" in text and "sky" in text
    with pytest.raises(DatasetError, match="val_fraction"):
        ds.split(1.5)
    with pytest.raises(IndexError):
        ds[10]


def test_split_and_keyed_items_refuse_bad_fractions_and_seeds() -> None:
    # These escaped as numpy's TypeError/ValueError ("'<' not supported", "SeedSequence
    # expects int"), or (a bool seed) were taken as seed 1.
    images = [np.full((8, 8), i, np.uint8) for i in range(4)]
    ds = SegmentationDataset(images, [np.eye(8, dtype=np.uint8)] * 4, augment=Augment(4))
    for fraction in ("0.2", None):
        with pytest.raises(DatasetError, match="val_fraction"):
            ds.split(fraction)  # type: ignore[arg-type]
    for seed in (-1, 1.5, "x", None):
        with pytest.raises(DatasetError, match="seed"):
            ds.split(0.5, seed=seed)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="seed"):
            ds[(0, seed)]  # type: ignore[index]
    with pytest.raises(TypeError, match="seed"):
        ds[(0, True)]
    assert ds[(0, np.int64(3))][1].shape == (4, 4)


def test_views_pickle_and_work_in_dataloader_workers(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, n=4)
    ds = SegmentationDataset(images, masks, augment=Augment(patch_size=8))
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[(2, 3)], ds[(2, 3)])
    keys = [(i, 100 + i) for i in range(4)]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(ds, keys),  # type: ignore[arg-type]
        batch_size=2,
        num_workers=1,
    )
    batches = list(loader)
    torch.testing.assert_close(batches[1][0][1], ds[(3, 103)][0])


def test_pickled_data_leaves_the_decoded_cache_behind(tmp_path: Path) -> None:
    # What a "spawn" DataLoader worker (macOS, Windows) receives, every epoch.
    images, masks = make_folder(tmp_path, n=4, size=(64, 96))
    warm = SegmentationDataset(images, masks, augment=Augment(patch_size=32))
    cold = SegmentationDataset(images, masks, augment=Augment(patch_size=32), cache_bytes=0)
    assert warm._store.cached_bytes == 4 * 64 * 96 * 4  # every image and mask decoded
    sent = ForkingPickler.dumps(warm)
    assert len(sent) < len(ForkingPickler.dumps(cold)) + 64  # no larger than no cache
    clone = pickle.loads(sent)
    assert "0/4 images" in clone.describe()
    assert (clone.config_fields(), clone.augment) == (warm.config_fields(), warm.augment)
    _, val = warm.split(0.5, seed=1)  # unaugmented: plain indices give whole images
    pairs = [(warm[(i, 7)], clone[(i, 7)]) for i in range(4)]
    pairs += [(val[i], pickle.loads(pickle.dumps(val))[i]) for i in range(2)]
    for (image, mask), (image_copy, mask_copy) in pairs:
        assert torch.equal(image, image_copy) and torch.equal(mask, mask_copy)
    assert warm._store.cached_bytes == 4 * 64 * 96 * 4  # the original keeps its cache


def test_pickled_data_carries_nothing_per_foreground_pixel() -> None:
    # Each "spawn" worker receives the store every epoch: candidate crop centres kept per
    # sample (up to 48 KiB each) made 10,000 small tiles ~480 MiB to send.
    images = [np.zeros((64, 64), np.uint8)] * 20
    sparse, full = np.zeros((64, 64), np.uint8), np.ones((64, 64), np.uint8)
    sparse[0, 0], full[0, 0] = 1, 0
    sizes = [
        len(ForkingPickler.dumps(SegmentationDataset(images, [m] * 20, augment=Augment(16))))
        for m in (sparse, full)
    ]
    assert abs(sizes[1] - sizes[0]) < 256


def test_real_membrane_data_is_binary(isbi_dir: Path) -> None:
    ds = SegmentationDataset(isbi_dir / "images", isbi_dir / "masks")
    assert len(ds) == 30 and ds.in_channels == 1 and ds.num_classes == 2
    fields = ds.config_fields()
    assert fields["mask_encoding"] == "binary" and fields["mask_values"] == (0, 255)
    assert ds.class_frequencies()[0] == pytest.approx(0.22, abs=0.02)
    image, mask = ds[0]
    assert image.shape == (1, 512, 512) and set(mask.unique().tolist()) == {0, 1}


def test_palette_folder_with_void_passes_ignore_through(tmp_path: Path) -> None:
    indices = np.resize(np.array([0, 1, 2, 255], np.uint8), (8, 8))
    (tmp_path / "labels").mkdir()
    for i in range(2):
        write(tmp_path / "images" / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
        mask = Image.fromarray(indices)
        mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
        mask.save(tmp_path / "labels" / f"{i}.png")
    ds = SegmentationDataset(tmp_path / "images", tmp_path / "labels", ignore_index=255)
    fields = ds.config_fields()
    assert fields["mask_encoding"] == "palette" and fields["num_classes"] == 3
    assert fields["class_colors"] == ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    assert fields["ignore_index"] == 255
    np.testing.assert_array_equal(ds[0][1].numpy(), indices)
    np.testing.assert_allclose(ds.class_frequencies(), [1 / 3] * 3)


def test_bad_arguments_are_refused_at_construction() -> None:
    image, mask = [np.zeros((4, 4), np.uint8)], [np.eye(4, dtype=np.uint8)]
    with pytest.raises(DatasetError, match="augment must be"):
        SegmentationDataset(image, mask, augment="flip")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="ambiguous"):
        SegmentationDataset(image, mask, augment=True)
    with pytest.raises(DatasetError, match="cache_bytes"):
        SegmentationDataset(image, mask, cache_bytes=-1)
    with pytest.raises(DatasetError, match="ignore_index"):
        SegmentationDataset(image, mask, ignore_index="255")  # type: ignore[arg-type]


def test_like_decodes_a_test_set_with_the_training_mapping(tmp_path: Path) -> None:
    # Training masks use grey levels 0/128/255; the test set lacks 128, so discovering its
    # own mapping would call 255 class 1. like= keeps the training classes.
    train_masks = [
        np.array([[0, 128], [255, 0]], np.uint8),
        np.array([[255, 128], [0, 0]], np.uint8),
    ]
    images = [np.full((2, 2), 9, np.uint8), np.full((2, 2), 99, np.uint8)]
    train = SegmentationDataset(images, train_masks)
    assert train.config_fields()["mask_values"] == (0, 128, 255)
    test_mask = np.array([[0, 255], [255, 0]], np.uint8)
    alone = SegmentationDataset([images[0]], [test_mask])
    assert alone[0][1].max().item() == 1  # what like= prevents
    for reference in (train, UNetConfig(**train.config_fields())):
        test = SegmentationDataset([images[0]], [test_mask], like=reference)
        np.testing.assert_array_equal(test[0][1].numpy(), [[0, 2], [2, 0]])
        assert test.mean == train.mean and test.std == train.std
        assert test.num_classes == 3
    with pytest.raises(DatasetError, match="not among the classes"):
        SegmentationDataset([images[0]], [np.array([[0, 7], [0, 0]], np.uint8)], like=train)


def test_like_with_colour_masks_uses_the_model_colours(tmp_path: Path) -> None:
    red, blue = (255, 0, 0), (0, 0, 255)
    mask = np.array([[red, blue], [blue, blue]], np.uint8)
    train = SegmentationDataset([np.zeros((2, 2, 3), np.uint8)], [mask])
    config = UNetConfig(**train.config_fields())
    only_red = np.array([[red, red], [red, red]], np.uint8)
    test = SegmentationDataset([np.zeros((2, 2, 3), np.uint8)], [only_red], like=config)
    assert test[0][1].unique().tolist() == [config.class_colors.index(red)]  # type: ignore[union-attr]


def test_like_a_saved_model_reads_void_colours_as_ignore_index(tmp_path: Path) -> None:
    # CamVid-style colour masks: black is void, mapped to ignore_index by the user. A test
    # set drawn the same way must decode with like=<model loaded from disk>.
    red, green, black = (255, 0, 0), (0, 255, 0), (0, 0, 0)
    mask = np.array([[red, green], [black, green]], np.uint8)
    train = SegmentationDataset(
        [np.zeros((2, 2, 3), np.uint8)],
        [mask],
        color_map={red: 0, green: 1, black: 255},
        ignore_index=255,
    )
    assert train.config_fields()["ignore_colors"] == (black,)
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(UNetConfig(**train.config_fields()).to_dict()))
    config = UNetConfig.from_dict(json.loads(saved.read_text()))
    test = SegmentationDataset([np.zeros((2, 2, 3), np.uint8)], [mask], like=config)
    np.testing.assert_array_equal(test[0][1].numpy(), [[0, 1], [255, 1]])
    with pytest.raises(DatasetError, match="#0000ff"):
        blue = np.array([[red, (0, 0, 255)], [black, green]], np.uint8)
        SegmentationDataset([np.zeros((2, 2, 3), np.uint8)], [blue], like=config)


def test_with_ignore_index_reads_a_mask_value_as_void_sharing_the_images(
    tmp_path: Path,
) -> None:
    # Index masks 0..2 with void 3, built without ignore_index: 3 is a fourth class.
    rng = np.random.default_rng(0)
    for split, values in (("train", [0, 1, 2, 3]), ("val", [0, 2, 3])):
        for i in range(3):
            write(tmp_path / split / "images" / f"{i}.png", rng.integers(0, 255, (8, 8), np.uint8))
            mask = np.resize(np.array(values, np.uint8), 64).reshape(8, 8)
            write(tmp_path / split / "masks" / f"{i}.png", mask)
    data = SegmentationDataset(tmp_path / "train" / "images", tmp_path / "train" / "masks")
    assert data.num_classes == 4 and data.ignore_index is None
    voided = data.with_ignore_index(3)
    assert (voided.num_classes, voided.ignore_index) == (3, 3)
    assert voided.config_fields()["mask_values"] == (0, 1, 2)
    augmented = data.with_augment(Augment(patch_size=4)).with_ignore_index(3)
    assert isinstance(augmented.augment, Augment) and augmented.augment.ignore_index == 3
    image, mask = voided[0]
    assert torch.equal(image, data[0][0]) and int(mask.max()) == 3  # void passes through
    assert voided._store.image_cache is data._store.image_cache  # decoded once, shared
    assert data.num_classes == 4  # the original view is untouched
    assert voided.with_ignore_index(3) is voided
    with pytest.raises(DatasetError, match=r"already skips mask value 3.*ignore_index=5"):
        voided.with_ignore_index(5)
    with pytest.raises(DatasetError, match="must be an int"):
        data.with_ignore_index("3")  # type: ignore[arg-type]
    # A validation set lacking class 1 follows the training mapping: value 2 stays class 2.
    val = SegmentationDataset(tmp_path / "val" / "images", tmp_path / "val" / "masks", like=data)
    val_voided = val.with_ignore_index(3, like=voided)
    assert set(np.unique(val_voided[0][1].numpy())) == {0, 2, 3}
    train_view, _ = data.split(0.34, seed=0)
    assert len(train_view.with_ignore_index(3)) == len(train_view)


def test_negative_void_values_read_with_a_negative_ignore_index() -> None:
    # torch's own convention: int64 label arrays with -100 for void (ignore_index=-100).
    mask = blocks([0, 1, -100, 2], (8, 8)).astype(np.int64)
    images = [np.zeros((8, 8), np.uint8)] * 2
    with pytest.raises(DatasetError, match=r"negative values \[-100\].*ignore_index=-100"):
        SegmentationDataset(images, [mask, mask])
    data = SegmentationDataset(images, [mask, mask], ignore_index=-100)
    assert data.num_classes == 3
    np.testing.assert_array_equal(data[0][1].numpy(), mask)
    test = SegmentationDataset(images[:1], [mask], like=UNetConfig(**data.config_fields()))
    np.testing.assert_array_equal(test[0][1].numpy(), mask)


def test_like_a_saved_model_folder_or_its_config_json(tmp_path: Path) -> None:
    # Grey levels 0/100/200 as classes 0..2; a test set holding only 100 and 200 would
    # number them 0 and 1 on its own. A folder from save_pretrained keeps the training ones.
    grey = np.array([[0, 100], [200, 200]], np.uint8)
    train = SegmentationDataset([np.zeros((2, 2), np.uint8)], [grey])
    model = UNet(UNetConfig(**train.config_fields(), base_channels=4, depth=1))
    model.save_pretrained(tmp_path / "model")
    only_two = np.array([[100, 200], [200, 100]], np.uint8)
    assert SegmentationDataset([np.zeros((2, 2), np.uint8)], [only_two])[0][1].max() == 1
    for like in (tmp_path / "model", str(tmp_path / "model" / "config.json")):
        test = SegmentationDataset([np.zeros((2, 2), np.uint8)], [only_two], like=like)
        np.testing.assert_array_equal(test[0][1].numpy(), [[1, 2], [2, 1]])
    with pytest.raises(DatasetError, match=r"like='org/name'.*UNet.from_pretrained\('org/name'\)"):
        SegmentationDataset([np.zeros((2, 2), np.uint8)], [only_two], like="org/name")


def test_like_a_training_set_names_its_colours_when_a_test_mask_has_another() -> None:
    red, blue, black = (255, 0, 0), (0, 0, 255), (0, 0, 0)
    image = [np.zeros((2, 2, 3), np.uint8)]
    train = SegmentationDataset(image, [np.array([[red, black], [black, red]], np.uint8)])
    unseen = np.array([[red, blue], [(0, 255, 0), blue]], np.uint8)
    with pytest.raises(
        DatasetError, match=r"\(s\) #0000ff, #00ff00 are.*\(#000000, #ff0000\); with like="
    ):
        SegmentationDataset(image, [unseen], like=train)


def test_unusable_image_arrays_are_named() -> None:
    mask = np.zeros((2, 2), np.uint8)
    mask[0] = 1
    good = np.zeros((2, 2), np.float32)
    with pytest.raises(DatasetError, match=r"images\[1\]: image holds NaN"):
        SegmentationDataset([good, np.full((2, 2), np.nan, np.float32)], [mask, mask])
    with pytest.raises(DatasetError, match=r"images\[0\]: integer image has negative"):
        SegmentationDataset([np.full((2, 2), -5, np.int16)], [mask])


def test_multi_band_files_keep_every_band_and_only_alpha_is_dropped(tmp_path: Path) -> None:
    # A fourth band was taken for alpha wherever it came from: RGB + near-infrared .npy
    # files and arrays trained 3-channel models without a word.
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 4096, (3, 6, 8, 4), dtype=np.uint16)
    mask = blocks([0, 1], (6, 8)).astype(np.uint8)
    (tmp_path / "npy").mkdir()
    (tmp_path / "tif").mkdir()
    for i, image in enumerate(bands):
        np.save(tmp_path / "npy" / f"{i}.npy", image)
        pages = [Image.fromarray(band) for band in image.transpose(2, 0, 1)]
        pages[0].save(tmp_path / "tif" / f"{i}.tif", save_all=True, append_images=pages[1:])
        write(tmp_path / "png" / f"{i}.png", (image[:, :, :4] // 16).astype(np.uint8))  # RGBA
        write(tmp_path / "masks" / f"{i}.png", mask)
    npy = SegmentationDataset(tmp_path / "npy", tmp_path / "masks")
    tif = SegmentationDataset(tmp_path / "tif", tmp_path / "masks")
    assert npy.in_channels == tif.in_channels == 4
    torch.testing.assert_close(npy[0][0], tif[0][0])
    assert SegmentationDataset(list(bands), [mask] * 3).in_channels == 4
    assert SegmentationDataset(tmp_path / "png", tmp_path / "masks").in_channels == 3


def test_stacked_masks_and_channels_first_images_are_named_with_the_fix(tmp_path: Path) -> None:
    # A (C, H, W) .npy was reported as "64x4 but the mask is 80x64"; a multi-page mask
    # (a stack of slices) was read as its first page.
    mask = blocks([0, 1], (6, 8)).astype(np.uint8)
    write(tmp_path / "masks" / "a.png", mask)
    (tmp_path / "images").mkdir()
    np.save(tmp_path / "images" / "a.npy", np.zeros((5, 6, 8), np.float32))
    with pytest.raises(DatasetError, match=r"a\.npy.*channels-first, shape \(5, 6, 8\).*transpose"):
        SegmentationDataset(tmp_path / "images", tmp_path / "masks")
    # tifffile.imwrite of an (H, W, C) array with C not 3 or 4 writes H pages of W x C.
    rows = [Image.fromarray(np.zeros((8, 5), np.uint8)) for _ in range(6)]
    rows[0].save(tmp_path / "images" / "a.tif", save_all=True, append_images=rows[1:])
    (tmp_path / "images" / "a.npy").unlink()
    with pytest.raises(DatasetError, match=r"6 pages of 5x8.*planarconfig='contig'"):
        SegmentationDataset(tmp_path / "images", tmp_path / "masks")
    (tmp_path / "images" / "a.tif").unlink()
    np.save(tmp_path / "images" / "a.npy", np.zeros((6, 8, 5), np.float32))
    pages = [Image.fromarray(mask), Image.fromarray(mask)]
    pages[0].save(tmp_path / "masks" / "a.tif", save_all=True, append_images=pages[1:])
    (tmp_path / "masks" / "a.png").unlink()
    with pytest.raises(DatasetError, match=r"a\.tif: a TIFF of 2 pages.*one mask file per page"):
        SegmentationDataset(tmp_path / "images", tmp_path / "masks")


def test_a_tiff_of_bands_pillow_cannot_open_is_scanned_and_read(tmp_path: Path) -> None:
    pytest.importorskip("tifffile")
    image = np.random.default_rng(3).integers(0, 4096, (6, 8, 6), dtype=np.uint16)
    write_tiff(tmp_path / "images" / "a.tif", image)
    write(tmp_path / "masks" / "a.png", blocks([0, 1], (6, 8)).astype(np.uint8))
    ds = SegmentationDataset(tmp_path / "images", tmp_path / "masks", mean=[0.0] * 6, std=[1.0] * 6)
    assert ds.in_channels == 6
    torch.testing.assert_close(ds[0][0], torch.from_numpy(image / 65535).permute(2, 0, 1).float())


def test_big_images_beyond_the_cache_are_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing said so: 8000 x 8000 PNGs beyond cache_bytes were decoded whole for every
    # 256-px patch, and training ran 10x slower without a word.
    from unetseg import data as data_module

    monkeypatch.setattr(data_module, "_BIG_IMAGE_PIXELS", 48)
    for i in range(2):
        write(tmp_path / "images" / f"{i}.png", np.zeros((6, 8), np.uint8))
        write(tmp_path / "masks" / f"{i}.png", blocks([0, 1], (6, 8)).astype(np.uint8))
    with caplog.at_level("WARNING", logger="unetseg"):
        SegmentationDataset(tmp_path / "images", tmp_path / "masks")
        assert not caplog.records
        SegmentationDataset(tmp_path / "images", tmp_path / "masks", cache_bytes=100)
    assert len(caplog.records) == 1
    assert "2 of 2 image files" in caplog.text and "raise cache_bytes" in caplog.text
