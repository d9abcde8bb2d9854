import pickle

import numpy as np
import pytest
import torch

from unetseg import Augment, ConfigError, DatasetError, SegmentationDataset
from unetseg.augment import draw_pixel, foreground_classes

NO_JITTER = {"brightness": 0.0, "contrast": 0.0, "gamma": 0.0}


def block_masks(n: int = 3, size: tuple[int, int] = (40, 56), seed: int = 0) -> list[np.ndarray]:
    """Masks of 8x8 blocks of classes 0..3, so resizing keeps block interiors."""
    rng = np.random.default_rng(seed)
    cells = [rng.integers(0, 4, (size[0] // 8, size[1] // 8)) for _ in range(n)]
    return [np.kron(c, np.ones((8, 8), dtype=np.int64)).astype(np.uint8) for c in cells]


def mask_as_image_dataset(augment: Augment, n: int = 3) -> SegmentationDataset:
    # The image *is* the mask (as float), so any geometric mismatch between them shows.
    masks = block_masks(n)
    images = [m.astype(np.float32) for m in masks]
    return SegmentationDataset(images, masks, mean=[0.0], std=[1.0], augment=augment)


def test_image_and_mask_move_together() -> None:
    ds = mask_as_image_dataset(Augment(patch_size=32, scale=None, **NO_JITTER))
    for seed in range(8):
        image, mask = ds[(seed % 3, seed)]
        assert image.shape == (1, 32, 32) and mask.shape == (32, 32)
        assert mask.dtype == torch.int64 and image.dtype == torch.float32
        torch.testing.assert_close(image[0], mask.float())


def test_scaling_keeps_label_values_and_block_interiors() -> None:
    ds = mask_as_image_dataset(Augment(patch_size=24, scale=(0.7, 1.4), **NO_JITTER))
    for seed in range(8):
        image, mask = ds[(seed % 3, seed)]
        assert set(mask.unique().tolist()) <= {0, 1, 2, 3}  # no new label values
        agree = (image[0].round() == mask.float()).float().mean().item()
        assert agree > 0.8  # only block edges differ


def test_scaled_mask_edges_follow_the_bilinear_image() -> None:
    # A binary mask whose image is its own indicator: after any zoom, a pixel is class 1
    # exactly where the interpolated indicator is above one half. Nearest-neighbour label
    # sampling would shift edges by up to half a pixel against the image and fail this.
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, 21:] = 1
    mask[37:, :] = 1
    mask[5:9, 5:40] = 0  # a thin bar
    augment = Augment(patch_size=40, scale=(0.6, 1.7), flip=False, vflip=False, **NO_JITTER)
    ds = SegmentationDataset(
        [mask.astype(np.float32)], [mask], mean=[0.0], std=[1.0], augment=augment
    )
    for seed in range(12):
        image, target = ds[(0, seed)]
        torch.testing.assert_close(target, (image[0] > 0.5).long())


def test_vertical_flips_and_turns_switch_off_apart_from_horizontal_flips() -> None:
    # Rows numbered top to bottom: with only horizontal flips, they stay in order.
    rows = np.repeat(np.arange(32, dtype=np.float32)[:, None], 32, axis=1)
    cols = rows.T.copy()
    augment = Augment(patch_size=32, **NO_JITTER)  # the defaults
    ds = SegmentationDataset(
        [np.stack([rows, cols, rows], axis=-1)], [(rows > 15).astype(np.uint8)],
        mean=[0.0] * 3, std=[1.0] * 3, augment=augment,
    )  # fmt: skip
    mirrored = 0
    for seed in range(16):
        image, _ = ds[(0, seed)]
        torch.testing.assert_close(image[0], torch.from_numpy(rows))
        mirrored += int(torch.equal(image[1], torch.from_numpy(cols[:, ::-1].copy())))
    assert 0 < mirrored < 16
    turning = Augment(patch_size=32, rotate90=True, **NO_JITTER)
    turned = [ds.with_augment(turning)[(0, seed)][0][0] for seed in range(16)]
    assert any(not torch.equal(t, torch.from_numpy(rows)) for t in turned)


def test_seeded_items_are_reproducible_and_seeds_differ() -> None:
    ds = mask_as_image_dataset(Augment(patch_size=16))
    a, b, c = ds[(1, 5)], ds[(1, 5)], ds[(1, 6)]
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(3)
    d = ds[1]
    torch.manual_seed(3)
    torch.testing.assert_close(ds[1], d)  # plain keys draw from torch's global RNG


def test_fast_path_matches_calling_augment_on_whole_tensors() -> None:
    augment = Augment(patch_size=20)
    plain = mask_as_image_dataset(augment).with_augment(None)
    ds = plain.with_augment(augment)
    for seed in range(4):
        expected = augment(*plain[seed % 3], np.random.default_rng(seed))
        torch.testing.assert_close(ds[(seed % 3, seed)], expected)


def test_validation_view_is_not_augmented() -> None:
    ds = mask_as_image_dataset(Augment(patch_size=16), n=5)
    train, val = ds.split(0.4, seed=1)
    assert val.augment is False and isinstance(train.augment, Augment)
    image, mask = val[(0, 123)]
    assert mask.shape == (40, 56)
    torch.testing.assert_close((image, mask), val[0])


def test_foreground_oversampling_raises_foreground_fraction() -> None:
    mask = np.zeros((96, 96), dtype=np.uint8)
    mask[70:78, 10:18] = 1
    images = [np.zeros((96, 96), np.uint8)]

    def fraction(prob: float) -> float:
        augment = Augment(patch_size=16, scale=None, foreground_prob=prob, **NO_JITTER)
        ds = SegmentationDataset(images, [mask], mean=[0.0], std=[1.0], augment=augment)
        return float(np.mean([ds[(0, s)][1].float().mean().item() for s in range(60)]))

    assert fraction(1.0) > 0.2 > 0.05 > fraction(0.0)


def test_foreground_crops_are_centred_on_any_pixel_of_the_class() -> None:
    # Candidate centres thinned by a raster stride (every 16th pixel of a 256-wide class
    # here) left whole columns never centred on; each pixel of the class must be as likely.
    cols = np.tile(np.arange(256, dtype=np.float32), (256, 1))
    mask = np.ones((256, 256), np.uint8)
    mask[0, 0] = 0
    augment = Augment(patch_size=1, flip=False, foreground_prob=1.0, **NO_JITTER)
    ds = SegmentationDataset([cols], [mask], mean=[0.0], std=[1.0], augment=augment)
    centres = [int(ds[(0, seed)][0].item()) for seed in range(400)]
    assert len(set(centres)) > 150  # of 256 columns; ~200 expected, 16 with the stride
    assert len({c % 16 for c in centres}) == 16


def test_foreground_classes_and_pixels_skip_background_and_ignore_index() -> None:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, 32:] = 1
    mask[5, 5] = 2  # one pixel: found by a scan, not by the probes
    mask[6, 6] = 7  # ignored
    np.testing.assert_array_equal(foreground_classes(mask, ignore_index=7), [1, 2])
    assert foreground_classes(np.zeros((4, 4), np.uint8), None).size == 0
    rng = np.random.default_rng(0)
    assert {draw_pixel(mask, 2, rng) for _ in range(5)} == {(5, 5)}
    assert all(mask[draw_pixel(mask, 1, rng)] == 1 for _ in range(20))  # type: ignore[index]
    assert draw_pixel(mask, 3, rng) is None


def test_oversampling_draws_rare_classes_as_often_as_common_ones() -> None:
    mask = np.zeros((128, 128), dtype=np.uint8)
    mask[:, 64:] = 1  # half the image
    mask[20:22, 20:22] = 2  # four pixels
    augment = Augment(patch_size=16, scale=None, foreground_prob=1.0, **NO_JITTER)
    ds = SegmentationDataset(
        [np.zeros((128, 128), np.uint8)], [mask], mean=[0.0], std=[1.0], augment=augment
    )
    seen = np.mean([bool((ds[(0, s)][1] == 2).any()) for s in range(200)])
    # A uniformly drawn foreground pixel would be class 2 once in about 2,000 crops.
    assert 0.35 < seen < 0.65


def test_small_images_are_padded_with_ignore_index() -> None:
    mask = np.ones((10, 12), dtype=np.uint8)
    mask[0, 0] = 0
    ds = SegmentationDataset(
        [np.full((10, 12), 200, np.uint8)], [mask], ignore_index=255, mean=[0.5], std=[0.5]
    )
    augmented = ds.with_augment(Augment(patch_size=16, scale=None, **NO_JITTER))
    assert augmented.augment.ignore_index == 255  # type: ignore[union-attr]
    image, out = augmented[(0, 0)]
    assert out.shape == (16, 16)
    assert (out == 255).sum() == 16 * 16 - 10 * 12
    assert (image == 0).sum() == 16 * 16 - 10 * 12  # padded with 0 after normalisation


def test_user_callable_gets_tensors_and_rng() -> None:
    def crop_corner(
        image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k = int(rng.integers(1, 4))
        return image[:, :k, :k], mask[:k, :k]

    ds = mask_as_image_dataset(Augment()).with_augment(crop_corner)
    image, mask = ds[(0, 9)]
    assert image.shape[-1] == mask.shape[-1] == int(np.random.default_rng(9).integers(1, 4))


def test_augment_is_picklable_and_validated() -> None:
    augment = Augment(patch_size=(32, 48), ignore_index=255)
    assert pickle.loads(pickle.dumps(augment)) == augment
    for bad in (
        {"patch_size": 0},
        {"patch_size": (3, 4, 5)},
        {"scale": (2.0, 1.0)},
        {"brightness": -1},
        {"foreground_prob": 2},
    ):
        with pytest.raises(ConfigError, match="Augment"):
            Augment(**bad)  # type: ignore[arg-type]


def test_augment_refuses_wrong_types_with_its_own_error() -> None:
    # Each of these raised a bare TypeError/ValueError, or (flip="no") was accepted and
    # switched the transform on.
    for bad in (
        {"patch_size": 32.0},
        {"scale": 1.5},
        {"scale": (1.0,)},
        {"scale": ("a", "b")},
        {"flip": "no"},
        {"vflip": None},
        {"rotate90": 1},
    ):
        with pytest.raises(ConfigError, match=f"Augment: {next(iter(bad))}"):
            Augment(**bad)  # type: ignore[arg-type]
    augment = Augment(patch_size=np.int64(32), brightness=np.float32(0.2))  # type: ignore[arg-type]
    assert augment.patch_size == (32, 32) and type(augment.patch_size[0]) is int


def test_calling_augment_on_wrong_inputs_says_what_it_takes() -> None:
    # numpy arrays, an (H, W) image or an int seed failed deep inside with
    # AttributeError/AxisError.
    augment, rng = Augment(patch_size=8), np.random.default_rng(0)
    image, mask = torch.rand(1, 12, 12), torch.zeros(12, 12, dtype=torch.int64)
    with pytest.raises(DatasetError, match=r"torch\.from_numpy"):
        augment(image.numpy(), mask.numpy(), rng)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=r"\(C, H, W\)"):
        augment(image[0], mask, rng)
    with pytest.raises(DatasetError, match="default_rng"):
        augment(image, mask, 0)  # type: ignore[arg-type]
    assert augment(image, mask, rng)[0].shape == (1, 8, 8)


def test_intensity_jitter_changes_values_but_not_shape() -> None:
    ds = mask_as_image_dataset(
        Augment(
            patch_size=None, flip=False, rotate90=False, brightness=0.5, contrast=0.5, gamma=0.5
        )
    )
    image, mask = ds[(0, 1)]
    plain = ds.with_augment(False)[0]
    assert image.shape == plain[0].shape and torch.equal(mask, plain[1])
    assert not torch.allclose(image, plain[0])
    assert torch.isfinite(image).all()


def test_augment_leaves_the_callers_tensors_unchanged() -> None:
    # The jitter works in place; on a view of the caller's image it would compound epoch
    # after epoch on in-memory data.
    image, mask = torch.rand(1, 32, 32), torch.zeros(32, 32, dtype=torch.int64)
    before = image.clone()
    for size in (None, (16, 32), 32):
        for seed in range(4):
            Augment(patch_size=size, flip=False)(image, mask, np.random.default_rng(seed))
    assert torch.equal(image, before)


def test_elastic_deformation_warps_image_and_mask_alike() -> None:
    plain = Augment(patch_size=32, scale=None, flip=False, rotate90=False, **NO_JITTER)
    warped = Augment(
        patch_size=32, scale=None, flip=False, rotate90=False, elastic=3.0, elastic_spacing=8,
        **NO_JITTER,
    )  # fmt: skip
    base, ds = mask_as_image_dataset(plain), mask_as_image_dataset(warped)
    moved = 0
    for seed in range(6):
        image, mask = ds[(seed % 3, seed)]
        assert set(mask.unique().tolist()) <= {0, 1, 2, 3}  # nearest: no new labels
        agree = (image[0].round() == mask.float()).float().mean().item()
        assert agree > 0.85  # the image moved with the mask (only block edges blend)
        moved += int(not torch.equal(mask, base[(seed % 3, seed)][1]))
        torch.testing.assert_close(ds[(seed % 3, seed)], (image, mask))  # seeded
    assert moved >= 5  # the field really displaces pixels


def test_zoom_then_elastic_mask_edges_still_follow_the_image() -> None:
    # Zoom and elastic warp both resample: the mask must be rounded to labels once, after
    # both, or its edges drift off the twice-interpolated image's (a pixel on fine blocks).
    mask = (block_masks(1, (64, 64))[0] > 1).astype(np.uint8)
    augment = Augment(patch_size=24, scale=(0.5, 2.0), elastic=5.0, elastic_spacing=8, **NO_JITTER)
    ds = SegmentationDataset(
        [mask.astype(np.float32)], [mask], mean=[0.0], std=[1.0], augment=augment
    )
    for seed in range(6):
        image, target = ds[(0, seed)]
        torch.testing.assert_close(target, (image[0] > 0.5).long())


def test_elastic_arguments_are_validated() -> None:
    with pytest.raises(ConfigError, match="elastic"):
        Augment(elastic=-1.0)
    with pytest.raises(ConfigError, match="elastic_spacing"):
        Augment(elastic=2.0, elastic_spacing=2)
