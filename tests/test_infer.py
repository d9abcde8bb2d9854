from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import unetseg
from unetseg import InputError, UNet
from unetseg._utils import cpu_has_fast_bf16
from unetseg.imaging import prepare_image
from unetseg.infer import estimate_memory, gaussian_weights, mask_dtype, plan_tiles, segment


def tiny(in_channels: int = 1, num_classes: int = 2, **kwargs: Any) -> UNet:
    torch.manual_seed(0)
    return UNet(in_channels, num_classes, base_channels=4, depth=kwargs.pop("depth", 2), **kwargs)


def blobs(n: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed noise and its sign: a task a tiny U-Net learns in a few dozen steps."""
    noise = torch.randn(n, 1, size, size, generator=gen)
    smooth = F.conv2d(F.pad(noise, (3, 3, 3, 3), mode="reflect"), torch.ones(1, 1, 7, 7) / 49)
    return smooth * 3, (smooth > 0).long()[:, 0]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models: a second thread gains nothing and, on a busy machine, costs up to 7x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained() -> Iterator[UNet]:
    """A depth-3 model trained for 40 steps: confident, non-constant predictions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = UNet(1, 2, base_channels=4, depth=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        x, y = blobs(8, 48, gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    torch.set_num_threads(threads)
    yield model.eval()


class ForwardSpy:
    """Wraps a model's forward and records input shapes."""

    def __init__(self, model: UNet, monkeypatch: pytest.MonkeyPatch):
        self.shapes: list[tuple[int, ...]] = []
        original = model.forward

        def spy(x: torch.Tensor) -> torch.Tensor:
            self.shapes.append(tuple(x.shape))
            return original(x)

        monkeypatch.setattr(model, "forward", spy)


# --- outputs ---------------------------------------------------------------------------


def test_every_input_form_gives_indices_at_input_size(tmp_path: Path) -> None:
    model = tiny(in_channels=3, num_classes=3)
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    forms: list[Any] = [
        rgb,
        Image.fromarray(rgb),
        path,
        str(path),
        torch.from_numpy(rgb).permute(2, 0, 1),
        rgb[:, :, 0],  # grey to an RGB model: repeated
    ]
    results = [segment(model, form) for form in forms]
    for result in results:
        assert result.shape == (37, 53)
        assert result.dtype == np.uint8
    for result in results[1:5]:  # the same pixels in four forms
        np.testing.assert_array_equal(result, results[0])


def test_matches_manual_forward_with_config_normalisation() -> None:
    model = tiny(num_classes=4)
    model.config = model.config.replace(image_mean=(0.3,), image_std=(0.2,))
    image = np.random.default_rng(1).integers(0, 256, (40, 45), dtype=np.uint8)
    x = prepare_image(image, 1, (0.3,), (0.2,))
    with torch.no_grad():
        expected = model.eval()(x[None]).argmax(1)[0].numpy()
    model.train()
    got = segment(model, image, amp="off")  # float32, as the reference
    np.testing.assert_array_equal(got, expected)
    assert model.training  # mode restored


def test_return_probs_is_a_tuple_of_consistent_arrays() -> None:
    model = tiny(num_classes=3)
    image = np.random.default_rng(2).random((30, 41), dtype=np.float32)
    indices, probs = segment(model, image, return_probs=True)
    assert probs.shape == (3, 30, 41)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), indices)


def test_many_classes_use_uint16() -> None:
    model = UNet(1, 300, base_channels=4, depth=1)
    out = segment(model, np.zeros((6, 7), dtype=np.uint8))
    assert out.dtype == np.uint16
    assert mask_dtype(256) == np.uint8
    assert mask_dtype(257) == np.uint16


def test_list_batches_same_size_images_and_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny()
    rng = np.random.default_rng(3)
    images = [rng.random((32, 40), dtype=np.float32) for _ in range(3)]
    images.insert(2, rng.random((20, 24), dtype=np.float32))
    singles = [segment(model, image) for image in images]
    spy = ForwardSpy(model, monkeypatch)
    batched = segment(model, images, batch_size=4)
    assert [s[0] for s in spy.shapes] == [2, 1, 1]  # same-size neighbours share a pass
    for single, out in zip(singles, batched, strict=True):
        np.testing.assert_array_equal(single, out)
    spy.shapes.clear()
    segment(model, images[:2] + images[3:], batch_size=2)
    assert [s[0] for s in spy.shapes] == [2, 1]
    assert segment(model, []) == []
    pairs = segment(model, images[:2], return_probs=True)
    assert isinstance(pairs, list) and all(p[1].shape == (2, 32, 40) for p in pairs)


# --- bad input -------------------------------------------------------------------------


def test_channel_count_mismatch_names_both_numbers() -> None:
    with pytest.raises(InputError, match=r"5 channels.*in_channels=3"):
        segment(tiny(in_channels=3), np.zeros((8, 8, 5), dtype=np.uint8))


def test_rgba_drops_alpha() -> None:
    model = tiny(in_channels=3)
    rgb = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(segment(model, rgba), segment(model, rgb))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 5), dtype=np.uint8), "empty"),
        (np.full((4, 4), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((2, 3, 4, 5)), "shape"),
        ("no/such/file.png", "no/such/file.png: no such file"),
        (12, "cannot use int"),
    ],
)
def test_bad_images_raise_input_error(image: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        segment(tiny(), image)


def test_bad_file_in_a_list_is_named_with_its_position(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    with pytest.raises(InputError, match=r"images\[1\]: .*bad\.png: not an image"):
        segment(tiny(), [good, bad, good])


@pytest.mark.parametrize(
    "kwargs",
    [{"tile_size": 0}, {"overlap": 1.0}, {"overlap": -0.1}, {"batch_size": 0}, {"max_memory": 0}],
)
def test_bad_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InputError):
        segment(tiny(), np.zeros((8, 8), np.uint8), **kwargs)


@pytest.mark.parametrize("device", ["nope", "meta", "cuda:99"])
def test_unusable_device_is_an_input_error_and_leaves_the_model(device: str) -> None:
    model = tiny()
    with pytest.raises(InputError, match=f"device '{device}'"):
        segment(model, np.zeros((8, 8), np.uint8), device=device)
    assert all(p.device.type == "cpu" for p in model.parameters())  # "meta" dropped them


def test_model_must_be_a_unet() -> None:
    with pytest.raises(InputError, match="must be a UNet"):
        segment(torch.nn.Conv2d(1, 2, 1), np.zeros((8, 8), np.uint8))


# --- loading by name -------------------------------------------------------------------


def test_model_by_path_uses_from_pretrained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = tiny()
    calls: list[object] = []

    def from_pretrained(cls: type[UNet], name: object, /, **kwargs: object) -> UNet:
        calls.append(name)
        return model

    monkeypatch.setattr(UNet, "from_pretrained", classmethod(from_pretrained), raising=False)
    image = np.random.default_rng(5).random((12, 12), dtype=np.float32)
    np.testing.assert_array_equal(segment(tmp_path, image), segment(model, image))
    segment("user/repo", image)
    assert calls == [str(tmp_path), "user/repo"]


def test_model_saved_to_a_folder_segments_like_the_original(tmp_path: Path) -> None:
    model = tiny().eval()
    model.save_pretrained(tmp_path / "ckpt")
    image = np.random.default_rng(6).random((20, 13), dtype=np.float32)
    np.testing.assert_array_equal(segment(tmp_path / "ckpt", image), segment(model, image))


# --- tiling ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap", "multiple"),
    [
        (100, 130, 32, 0.5, 4),
        (64, 64, 64, 0.25, 8),
        (1000, 37, 128, 0.25, 16),
        (97, 300, 48, 0.0, 16),
    ],
)
def test_tile_plan_covers_the_image_inside_its_bounds(
    height: int, width: int, tile: int, overlap: float, multiple: int
) -> None:
    plan = plan_tiles(height, width, tile, overlap, multiple, batch=3)
    th, tw = plan.tile
    covered = np.zeros((height, width), dtype=int)
    for _, y, x in plan.tiles:
        assert 0 <= y <= height - th and 0 <= x <= width - tw  # shifted inside, not padded
        covered[y : y + th, x : x + tw] += 1
    assert covered.min() >= 1
    for starts in (plan.ys[:-1], plan.xs[:-1]):
        assert all(s % multiple == 0 for s in starts)
    rows_per_batch = -(-plan.batch // len(plan.xs))  # ceil: a batch spans this many rows
    assert plan.band_height <= (1 + rows_per_batch) * th


def test_gaussian_weights_peak_in_the_middle() -> None:
    w = gaussian_weights(32, 48)
    assert w.shape == (32, 48) and float(w.min()) > 0
    assert float(w[16, 24]) > 0.98 > 0.01 > float(w[0, 0])
    assert torch.equal(gaussian_weights(8, 8, False, False), torch.ones(8, 8))


def test_tiled_agrees_with_whole_image(trained: UNet) -> None:
    x, _ = blobs(1, 160, torch.Generator().manual_seed(1))
    whole = segment(trained, x[0])
    tiled = segment(trained, x[0], tile_size=96)
    assert 0.2 < whole.mean() < 0.8  # both classes present: agreement is not trivial
    assert (whole == tiled).mean() >= 0.999


def test_amp_auto_is_bf16_on_fast_cpus_and_agrees_with_float32(trained: UNet) -> None:
    x, _ = blobs(1, 96, torch.Generator().manual_seed(4))
    exact, exact_probs = segment(trained, x[0], amp="off", return_probs=True)
    bf16, bf16_probs = segment(trained, x[0], amp="bf16", return_probs=True)
    assert bf16_probs.dtype == np.float32
    assert np.abs(bf16_probs - exact_probs).max() < 0.05
    assert (bf16 == exact).mean() >= 0.995
    auto = segment(trained, x[0], return_probs=True)[1]
    same_as = bf16_probs if cpu_has_fast_bf16() else exact_probs  # emulated bf16 is slow
    np.testing.assert_array_equal(auto, same_as)
    with pytest.raises(InputError, match="amp must be"):
        segment(trained, x[0], amp="int8")


def test_a_half_precision_model_runs_in_its_own_dtype(trained: UNet) -> None:
    # model.half() under amp="auto" (bf16 autocast on this CPU) was torch's "mixed dtype".
    x, _ = blobs(1, 96, torch.Generator().manual_seed(4))
    exact = segment(trained, x[0], amp="off")
    half = UNet(trained.config).half()
    half.load_state_dict(trained.state_dict())
    for amp in ("auto", "bf16"):
        for tile_size in (None, 64):
            got = segment(half, x[0], amp=amp, tile_size=tile_size)
            assert (got == exact).mean() >= 0.99
    assert next(half.parameters()).dtype == torch.float16


def test_model_layout_is_left_as_it_was() -> None:
    # segment() runs channels_last for speed; the weights must come back as they went in.
    image = np.zeros((16, 16), np.uint8)
    model = tiny()
    segment(model, image)
    assert all(p.is_contiguous() for p in model.parameters())
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    segment(model, image)
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not all(w.is_contiguous() for w in weights)


def test_tiled_probabilities_are_normalised(trained: UNet) -> None:
    x, _ = blobs(1, 70, torch.Generator().manual_seed(2))
    indices, probs = segment(trained, x[0], tile_size=32, overlap=0.5, return_probs=True)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(0), indices)


def test_tiles_are_bounded_and_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny()
    image = np.random.default_rng(6).random((100, 130), dtype=np.float32)
    spy = ForwardSpy(model, monkeypatch)
    segment(model, image, tile_size=32, batch_size=3, progress=False)
    assert spy.shapes and all(n <= 3 and h <= 32 and w <= 32 for n, _, h, w in spy.shapes)
    assert sum(s[0] for s in spy.shapes) == len(plan_tiles(100, 130, 32, 0.25, 4, batch=3).tiles)


def test_tiling_switches_on_above_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny()
    image = np.zeros((96, 96), dtype=np.uint8)
    budget = estimate_memory(model.config, 96, 96) - 1  # whole image just too big
    spy = ForwardSpy(model, monkeypatch)
    segment(model, image, max_memory=budget, progress=False)
    assert all(h < 96 and w < 96 for _, _, h, w in spy.shapes)
    assert all(estimate_memory(model.config, h, w, n) <= budget for n, _, h, w in spy.shapes)
    spy.shapes.clear()
    segment(model, image, max_memory=budget + 1)
    assert spy.shapes == [(1, 1, 96, 96)]


def test_tiled_accumulators_stay_a_band_not_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    # Full-image float accumulators would be K*H*W; the band is about one tile row.
    model = tiny(depth=2)
    sizes: list[int] = []
    zeros = torch.zeros

    def spy(*shape: Any, **kwargs: Any) -> torch.Tensor:
        out = zeros(*shape, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(torch, "zeros", spy)
    image = np.random.default_rng(7).integers(0, 256, (512, 512), dtype=np.uint8)
    out = segment(model, image, tile_size=64, batch_size=4, progress=False)
    assert out.shape == (512, 512)
    assert sizes and max(sizes) <= 2 * (2 * 64) * 512  # K * band_height * W, band <= 2 tiles


def test_progress_bar_can_be_switched_off(
    trained: UNet, capsys: pytest.CaptureFixture[str]
) -> None:
    image = np.zeros((80, 80), np.uint8)
    segment(trained, image, tile_size=16, progress=False)
    assert capsys.readouterr().err == ""
    segment(trained, image, tile_size=16, progress=True)
    assert "tile" in capsys.readouterr().err
    images = [np.zeros((24, 24), np.uint8)] * 8  # a long list gets a bar over its images
    segment(trained, images, progress=False)
    assert capsys.readouterr().err == ""
    segment(trained, images, progress=True)
    assert "image" in capsys.readouterr().err
    segment(trained, images[:2], progress=True)  # a short one does not
    assert capsys.readouterr().err == ""


# --- test-time augmentation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tta_flips", "mirrorings", "tile_size"),
    [
        (None, [(), (-1,)], None),  # unrecorded: horizontal only
        (("horizontal", "vertical"), [(), (-1,), (-2,), (-2, -1)], None),
        (("horizontal", "vertical"), [(), (-1,), (-2,), (-2, -1)], 32),
        (("vertical",), [(), (-2,)], 32),
    ],
)
def test_flip_tta_averages_over_the_flips_the_model_was_trained_with(
    tta_flips: tuple[str, ...] | None, mirrorings: list[tuple[int, ...]], tile_size: int | None
) -> None:
    model = tiny(num_classes=3).eval()
    model.config = model.config.replace(tta_flips=tta_flips)
    image = np.random.default_rng(8).random((32, 32), dtype=np.float32)
    x = torch.from_numpy(image)[None, None]
    total = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        for dims in mirrorings:
            probs = F.softmax(model(x.flip(dims) if dims else x), dim=1)
            total += probs.flip(dims) if dims else probs
    expected = (total / len(mirrorings))[0].numpy()
    indices, tta_probs = segment(
        model, image, tta=True, return_probs=True, tile_size=tile_size, amp="off"
    )
    np.testing.assert_allclose(tta_probs, expected, atol=1e-5)
    np.testing.assert_array_equal(indices, expected.argmax(0))
    assert not np.allclose(tta_probs, segment(model, image, return_probs=True)[1], atol=1e-3)


def test_channels_first_multi_band_arrays_and_npy_files_get_the_transpose_hint(
    tmp_path: Path,
) -> None:
    # The hint stopped at 4 channels: a (6, H, W) array from rasterio got "has 30 channels"
    # and nothing more.
    model = tiny(in_channels=6)
    bands = np.zeros((6, 20, 30), np.float32)
    np.save(tmp_path / "bands.npy", bands)
    for image in (bands, tmp_path / "bands.npy"):
        with pytest.raises(InputError, match=r"30 channels.*channels-first.*transpose\(1, 2, 0\)"):
            segment(model, image)
    np.testing.assert_array_equal(
        segment(model, bands.transpose(1, 2, 0)),
        segment(model, np.load(tmp_path / "bands.npy").transpose(1, 2, 0)),
    )


# --- segment_iter ----------------------------------------------------------------------


def test_segment_iter_yields_what_segment_returns_in_order(tmp_path: Path) -> None:
    model = tiny(num_classes=3)
    rng = np.random.default_rng(7)
    images: list[Any] = [rng.random((30, 41), dtype=np.float32) for _ in range(3)]
    images.insert(1, rng.random((64, 64), dtype=np.float32))  # another size: its own batch
    path = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 256, (33, 35), dtype=np.uint8)).save(path)
    images.append(path)
    expected = segment(model, images, tile_size=None)
    got = list(unetseg.segment_iter(model, images))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    # Tiled images and probabilities come out the same way too.
    tiled = list(unetseg.segment_iter(model, images[1:2], tile_size=32, return_probs=True))
    reference = segment(model, images[1], tile_size=32, return_probs=True)
    np.testing.assert_array_equal(tiled[0][0], reference[0])
    np.testing.assert_allclose(tiled[0][1], reference[1], atol=1e-6)


def test_segment_iter_reads_lazily_a_batch_at_a_time() -> None:
    model = tiny()
    rng = np.random.default_rng(8)
    read: list[int] = []

    def source() -> Iterator[np.ndarray]:
        for i in range(7):
            read.append(i)
            yield rng.random((32, 32), dtype=np.float32)

    masks = unetseg.segment_iter(model, source(), batch_size=2)
    assert read == []  # nothing read until asked
    first = next(masks)
    assert first.shape == (32, 32)
    # One batch of two, and the look-ahead image that showed the batch was full.
    assert len(read) <= 3
    assert len(list(masks)) == 6


def test_segment_iter_restores_the_model_and_grad_mode_between_and_after() -> None:
    model = tiny()
    model.train()
    images = [np.zeros((32, 32), np.float32)] * 3
    masks = unetseg.segment_iter(model, images, batch_size=1)
    next(masks)
    # The caller's own code between masks runs with gradients, as it would anyway.
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    assert not model.training  # eval while the iterator is open
    masks.close()  # abandoned half-way
    assert model.training
    list(unetseg.segment_iter(model, images))
    assert model.training


def test_segment_iter_error_names_the_position_after_yielding_the_masks_before() -> None:
    model = tiny()
    images: list[Any] = [np.zeros((32, 32), np.float32), np.zeros((32, 32), np.float32), "nope.png"]
    masks = unetseg.segment_iter(model, images, batch_size=1)
    assert next(masks).shape == (32, 32)
    assert next(masks).shape == (32, 32)
    with pytest.raises(InputError, match=r"images\[2\].*nope\.png"):
        next(masks)
    assert model.training  # put back on the error as well


@pytest.mark.parametrize(
    ("images", "kwargs", "message"),
    [
        ("scan.png", {}, "iterable of images"),
        (np.zeros((8, 8), np.float32), {}, "iterable of images"),
        ([], {"batch_size": 0}, "batch_size"),
        ([], {"amp": "fp8"}, "amp"),
        ([], {"device": "nonsense"}, "nonsense"),
    ],
)
def test_segment_iter_checks_arguments_when_called(
    images: Any, kwargs: dict[str, Any], message: str
) -> None:
    model = tiny()
    with pytest.raises(InputError, match=message):
        unetseg.segment_iter(model, images, **kwargs)  # no next(): raised at the call
    assert list(unetseg.segment_iter(model, [])) == []
