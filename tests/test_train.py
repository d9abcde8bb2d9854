"""fit(): the loop, its outputs, its errors, and bit-exact resume (Ctrl-C and kill -9)."""

from __future__ import annotations

import logging
import math
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import unetseg.train as train_module
from helpers import blocks, dead_pid, kill_9_when_flagged, leftover, write
from unetseg import (
    Augment,
    CheckpointError,
    DatasetError,
    SegmentationDataset,
    TrainingError,
    UNet,
)
from unetseg import checkpoint as ckpt
from unetseg._train_setup import MIN_LR_RATIO, amp_dtype, as_pair, lr_at, trained_flips
from unetseg._utils import cpu_has_fast_bf16
from unetseg.distributed import DistInfo
from unetseg.history import History
from unetseg.imaging import prepare_image
from unetseg.train import fit
from unetseg.visualize import colorize

SRC = Path(__file__).resolve().parents[1] / "src"

# Shared with the subprocess of the kill -9 test, so both build the very same run.
BUILD = textwrap.dedent(
    '''
    import numpy as np
    import torch
    from torch.utils.data import Dataset


    def make_pairs(n=8, size=32, channels=1, seed=0):
        g = torch.Generator().manual_seed(seed)
        pairs = []
        for _ in range(n):
            image = torch.rand(channels, size, size, generator=g)
            pairs.append((image, (image[0] > 0.5).long()))
        return pairs


    class TinyAugment:
        """Random 24-px crop and flips drawn from the rng fit() seeds."""

        def __init__(self, patch_size=24):
            self.patch_size = patch_size
            self.calls = []

        def __call__(self, image, mask, rng):
            p = self.patch_size
            y, x = (int(v) for v in rng.integers(0, mask.shape[0] - p + 1, size=2))
            image, mask = image[:, y : y + p, x : x + p], mask[y : y + p, x : x + p]
            if rng.random() < 0.5:
                image, mask = image.flip(-1), mask.flip(-1)
            return image.contiguous(), mask.contiguous()


    class KeyedDataset(Dataset):
        """Stand-in for SegmentationDataset: the CONTRACTS.md surface that fit() uses."""

        def __init__(self, pairs, augment=None, ignore_index=None):
            self.pairs, self.augment, self.ignore_index = pairs, augment, ignore_index
            self.class_names = ("background", "thing")
            self.keys = []

        def __len__(self):
            return len(self.pairs)

        def __getitem__(self, key):
            index, seed = key if isinstance(key, tuple) else (key, None)
            self.keys.append(key)
            image, mask = self.pairs[index]
            if self.augment:
                image, mask = self.augment(image, mask, np.random.default_rng(seed))
            return image, mask

        def with_augment(self, augment):
            return KeyedDataset(self.pairs, augment, self.ignore_index)

        def split(self, val_fraction=0.2, seed=0):
            order = np.random.default_rng(seed).permutation(len(self.pairs))
            n_val = max(1, round(len(self.pairs) * val_fraction))
            val = [self.pairs[i] for i in order[:n_val]]
            train = [self.pairs[i] for i in order[n_val:]]
            return KeyedDataset(train, self.augment, self.ignore_index), KeyedDataset(val)

        def config_fields(self):
            return {"in_channels": 1, "num_classes": 2, "class_names": self.class_names,
                    "mask_encoding": "binary", "mask_values": (0, 255),
                    "image_mean": (0.5,), "image_std": (0.29,)}


    def build():
        """Model, training set (augmented, keyed) and validation set of the resume tests."""
        from unetseg import UNet

        torch.manual_seed(0)
        model = UNet(1, 2, base_channels=4, depth=2, dropout=0.2)
        return model, KeyedDataset(make_pairs(8), TinyAugment()), make_pairs(2, seed=1)
    '''
)
_ns: dict[str, Any] = {}
exec(BUILD, _ns)
make_pairs, KeyedDataset, TinyAugment, build = (
    _ns["make_pairs"], _ns["KeyedDataset"], _ns["TinyAugment"], _ns["build"],
)  # fmt: skip

FAST = {"batch_size": 4, "progress": False}


def tiny(in_channels: int = 1, num_classes: int = 2) -> UNet:
    torch.manual_seed(0)
    return UNet(in_channels, num_classes, base_channels=4, depth=2)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(autouse=True)
def _tiny_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    # One thread: these models are so small that a second thread only waits on the first
    # (30x slower on a busy 2-core machine), and the kill -9 child uses one thread too.
    torch.set_num_threads(1)
    # augment.py belongs to the data helper; fit() must only call it through this hook.
    monkeypatch.setattr(train_module, "_default_augment", lambda patch_size: TinyAugment(24))


def test_fit_on_plain_pairs_records_history_and_best_model() -> None:
    model = tiny()
    history = fit(model, make_pairs(8), make_pairs(2, seed=1), epochs=2, lr=1e-2, **FAST)
    assert isinstance(history, History) and len(history) == 2
    assert history.stop_reason == "epochs" and history.steps == 4
    record = history.epochs[-1]
    for key in ("train_loss", "lr", "seconds", "images_per_s", "val/mean_iou", "val/iou/0",
                "val/dice/1", "val/pixel_accuracy"):  # fmt: skip
        assert math.isfinite(record[key]), key
    assert history.best_epoch in (1, 2) and history.restored_best
    assert all(p.is_contiguous() for p in model.parameters())  # not left channels_last
    assert model.config.metrics is not None
    assert model.config.metrics["mean_iou"] == history.best_mean_iou
    assert history.epochs[0]["lr"] > history.epochs[1]["lr"]  # decays to the end of the run


def test_keyed_dataset_gets_default_augmentation_split_and_metadata() -> None:
    data = KeyedDataset(make_pairs(8))
    model = tiny()
    history = fit(model, data, val_data=0.25, epochs=1, **FAST)
    assert "val/iou/thing" in history.epochs[0]
    cfg = model.config
    assert cfg.class_names == ("background", "thing")
    assert cfg.mask_encoding == "binary" and cfg.mask_values == (0, 255)
    assert cfg.image_mean == (0.5,) and cfg.metrics is not None


def test_torch_wrappers_of_a_segmentation_dataset_are_refused() -> None:
    # A Subset trained silently on whole, unaugmented images and left image_mean out of
    # the config although its items were normalised: segment() then skipped normalising.
    images = [np.full((16, 16), 40 * i, np.uint8) for i in range(4)]
    data = SegmentationDataset(images, [np.eye(16, dtype=np.uint8)] * 4, progress=False)
    subsets = torch.utils.data.random_split(data, [3, 1])
    for wrapped in (
        subsets[0],
        torch.utils.data.ConcatDataset([data, data]),
        torch.utils.data.Subset(torch.utils.data.ConcatDataset([data]), [0, 1]),
    ):
        with pytest.raises(DatasetError, match=r"of a SegmentationDataset.*data\.split"):
            fit(tiny(), wrapped, epochs=1, **FAST)


def test_torch_wrappers_of_a_segmentation_dataset_are_refused_as_val_data() -> None:
    # A Subset escaped check_same_mapping: built alone, the validation masks 0/255 read 255
    # as class 1, which is class 2 in training, and were scored without a word.
    images = [np.full((32, 32), 40 * i, np.uint8) for i in range(4)]
    masks = [blocks(levels, (32, 32)).astype(np.uint8) for levels in ([0, 128, 255], [0, 255])]
    train = SegmentationDataset(images, [masks[0]] * 4, progress=False)
    val = SegmentationDataset(images, [masks[1]] * 4, progress=False)
    for wrapped in (
        torch.utils.data.Subset(val, [0, 1]),
        torch.utils.data.random_split(val, [3, 1])[1],
        torch.utils.data.ConcatDataset([val]),
    ):
        with pytest.raises(
            DatasetError, match=r"val_data is a torch \w+ of a Segm.*split.*like=train_data"
        ):
            fit(tiny(1, 3), train, wrapped, epochs=1, **FAST)


@pytest.mark.parametrize(
    ("augment", "flips"),
    [
        (Augment(), ("horizontal",)),
        (Augment(vflip=True), ("horizontal", "vertical")),
        (Augment(rotate90=True), ("horizontal", "vertical")),  # a half turn after a mirror
        (Augment(flip=False, rotate90=True), ()),
        (lambda image, mask, rng: (image, mask), None),  # a user's callable: unknown
    ],
)
def test_config_records_the_flips_training_drew(augment: Any, flips: Any) -> None:
    mask = blocks([0, 1], (16, 16)).astype(np.uint8)
    data = SegmentationDataset([np.zeros((16, 16), np.uint8)], [mask], augment=augment)
    assert trained_flips(data) == flips


def test_sampling_keys_are_index_seed_and_each_item_seen_once_per_epoch() -> None:
    data = KeyedDataset(make_pairs(6), TinyAugment())
    seen: list[Any] = []

    class Spy(KeyedDataset):  # type: ignore[misc, valid-type]
        def __getitem__(self, key: Any) -> Any:
            seen.append(key)
            return super().__getitem__(key)

    spy = Spy(data.pairs, data.augment)
    fit(tiny(), spy, epochs=2, **FAST)
    training = seen[1:]  # the first fetch is fit()'s channel check
    assert all(isinstance(k, tuple) and len(k) == 2 for k in training)
    assert sorted(k[0] for k in training[:6]) == list(range(6))
    assert sorted(k[0] for k in training[6:]) == list(range(6))
    assert {k[1] for k in training[:6]}.isdisjoint({k[1] for k in training[6:]})


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    runs = []
    for seed in (0, 0, 1):
        model, data, _ = build()
        fit(model, data, epochs=2, seed=seed, **FAST)
        runs.append(model)
    assert same_weights(runs[0], runs[1])
    assert not same_weights(runs[0], runs[2])


def test_channel_and_class_mismatches_fail_at_the_start_with_both_numbers() -> None:
    with pytest.raises(TrainingError, match=r"1 channels.*in_channels=3"):
        fit(tiny(in_channels=3), make_pairs(4), epochs=1, **FAST)
    with pytest.raises(TrainingError, match=r"num_classes=2.*num_classes=3"):
        fit(tiny(num_classes=3), KeyedDataset(make_pairs(4)), epochs=1, **FAST)


def test_labels_outside_the_classes_are_explained_and_ignore_index_honoured() -> None:
    pairs = [(image, torch.where(mask > 0, 255, 0)) for image, mask in make_pairs(4)]
    with pytest.raises(TrainingError, match=r"\[255\].*ignore_index"):
        fit(tiny(), pairs, epochs=1, **FAST)
    model = tiny()
    history = fit(model, pairs, pairs[:1], epochs=1, ignore_index=255, **FAST)
    assert math.isfinite(history.epochs[0]["train_loss"])
    # Plain pairs carry no metadata: the config records the value so that a ground-truth
    # mask with void pixels can be drawn and written (colorize, save_mask).
    assert model.config.ignore_index == 255
    assert colorize(pairs[0][1], model).shape == (*pairs[0][1].shape, 3)


def test_nonfinite_loss_raises_naming_the_step_or_skips() -> None:
    pairs = make_pairs(8)
    pairs[5] = (torch.full_like(pairs[5][0], math.nan), pairs[5][1])
    with pytest.raises(TrainingError, match=r"step 1\b"):
        fit(tiny(), pairs, epochs=1, batch_size=8, progress=False)
    model = tiny()
    history = fit(model, pairs, epochs=2, batch_size=8, on_nonfinite="skip", progress=False)
    assert history.skipped_batches == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_max_time_stops_and_the_schedule_fits_the_budget() -> None:
    # The budget counts from the call (first-call set-up included), so give it room for
    # a few steps even on a loaded machine; epochs alone would never stop it.
    start = time.perf_counter()
    history = fit(tiny(), make_pairs(8), max_time=2.0, **FAST)
    assert history.stop_reason == "max_time" and history.steps >= 1
    assert time.perf_counter() - start < 2.0 + 5.0  # stops near the budget, not epochs later
    assert lr_at(0.0, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(0.1, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(1.0, 1.0, 0.1) == pytest.approx(MIN_LR_RATIO)
    assert lr_at(0.5, 1.0, 0.1) > lr_at(0.9, 1.0, 0.1)


def test_bad_arguments_are_refused() -> None:
    for kwargs in ({"epochs": 0}, {"max_time": -1.0}, {"epochs": 1, "on_nonfinite": "ignore"},
                   {"epochs": 1, "batch_size": 0}, {"epochs": 1, "amp": "fp8"},
                   {"epochs": 1, "device": "cuda:99"}, {"epochs": 1, "device": "gpu"}):  # fmt: skip
        with pytest.raises(TrainingError):
            fit(tiny(), make_pairs(4), progress=False, **kwargs)
    with pytest.raises(TrainingError, match="UNet"):
        fit(torch.nn.Conv2d(1, 2, 1), make_pairs(4), epochs=1)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="empty"):
        fit(tiny(), [], epochs=1)
    with pytest.raises(TrainingError, match="class_weights"):
        fit(tiny(), make_pairs(4), epochs=1, class_weights=[1.0], progress=False)


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": 0.0}, {"lr": -1e-3}, {"lr": math.nan}, {"lr": "1e-3"}, {"weight_decay": -1e-4},
     {"warmup": math.nan}, {"warmup": 1.5}, {"warmup": -0.1}, {"grad_clip": -1.0},
     {"grad_clip": 0.0}, {"grad_clip": math.nan}, {"patch_size": 0}, {"batch_size": 2.5},
     {"batch_size": True}, {"seed": -1}, {"seed": None}, {"num_workers": -1},
     {"ignore_index": "void"}, {"max_time": "5"}, {"val_data": 0}, {"val_data": 1},
     {"val_data": True}, {"callbacks": [lambda *args: None]}, {"callbacks": object()},
     {"class_weights": 2.0}, {"class_weights": "ab"}],
)  # fmt: skip
def test_bad_arguments_are_refused_before_training(kwargs: dict[str, Any]) -> None:
    # Left to torch these were raw TypeErrors/ValueErrors, or trained silently wrong: a NaN
    # lr or warmup gave a NaN loss blamed on the data, a negative grad_clip flipped every
    # gradient's sign, a bare function as a callback was never called.
    name = next(iter(kwargs))
    with pytest.raises(TrainingError, match=rf"^{name.split('_')[0].rstrip('s')}"):
        fit(tiny(), make_pairs(4), **{"epochs": 1, **FAST, **kwargs})


def test_numpy_numbers_are_accepted_as_arguments(tmp_path: Path) -> None:
    # They also reach the checkpoint's JSON: that was a raw TypeError after the first epoch.
    history = fit(tiny(), make_pairs(4), np.float32(0.5), epochs=np.int64(1), seed=np.int64(3),
                  batch_size=np.int64(2), lr=np.float32(1e-3), weight_decay=np.float32(0),
                  max_time=np.float32(60), grad_clip=np.float32(1), progress=False,
                  checkpoint_dir=tmp_path)  # fmt: skip
    assert history.best_epoch == 1
    assert ckpt.read_checkpoint(tmp_path / "last.safetensors").state["epoch"] == 1


def test_integer_images_train_on_the_scale_segment_reads_them() -> None:
    # uint8 pairs trained as 0..255 while segment() feeds the same images as 0..1.
    image, mask = make_pairs(1)[0]
    for raw in (
        (image * 255).round().to(torch.uint8),
        (image * 255).round().numpy().astype(np.int32),
    ):
        trained, _ = as_pair((raw, mask), "item")
        assert torch.allclose(trained, prepare_image(torch.as_tensor(raw), 1), atol=1e-7)


def test_pairs_with_unusable_masks_are_refused_naming_the_item() -> None:
    image, mask = make_pairs(1)[0]
    with pytest.raises(DatasetError, match=r"train_data\[0\].*mask of its own size"):
        fit(tiny(), [(image, mask[:16])] * 2, epochs=1, progress=False, batch_size=1)
    with pytest.raises(DatasetError, match=r"\(H, W, C\).*transpose"):
        fit(tiny(3), [(np.zeros((32, 32, 3), np.float32), mask)] * 2, epochs=1, progress=False)
    with pytest.raises(DatasetError, match="fractional"):  # .long() made 0.5 class 0
        fit(tiny(), [(image, mask * 0.5)] * 2, epochs=1, progress=False)
    assert as_pair((image, mask.float()), "item")[1].equal(mask)  # whole floats are fine


def test_val_data_with_other_channels_or_labels_is_refused_not_scored_around() -> None:
    # Other channels failed in the model after a whole training epoch, and labels outside
    # the classes were dropped from the confusion matrix: pixel accuracy 0.95 for junk.
    with pytest.raises(TrainingError, match=r"val_data's images have 3 channels"):
        fit(tiny(), make_pairs(4), make_pairs(2, channels=3), epochs=1, **FAST)
    val = [(image, mask * 5) for image, mask in make_pairs(2)]
    with pytest.raises(TrainingError, match=r"labels \[5\] in val_data\[0\]"):
        fit(tiny(), make_pairs(4), val, epochs=1, **FAST)
    void = [(image, torch.where(mask == 1, 255, mask)) for image, mask in make_pairs(2)]
    history = fit(tiny(), make_pairs(4), void, epochs=1, ignore_index=255, **FAST)
    assert history.epochs[0]["val/pixel_accuracy"] >= 0


def test_models_and_losses_fit_cannot_train_are_named_not_torch_errors() -> None:
    # Each was a raw RuntimeError/AttributeError from deep inside torch.
    with pytest.raises(TrainingError, match=r"float64; call model.float\(\)"):
        fit(tiny().double(), make_pairs(4), epochs=1, **FAST)
    with pytest.raises(TrainingError, match="float16"):
        fit(tiny().half(), make_pairs(4), epochs=1, **FAST)
    with pytest.raises(TrainingError, match="frozen"):
        fit(tiny().requires_grad_(False), make_pairs(4), epochs=1, **FAST)
    per_pixel = torch.nn.CrossEntropyLoss(reduction="none")
    for loss, message in ((per_pixel, r"\(4, 32, 32\), not a scalar"),
                          (lambda logits, target: 1.0, "returned float"),
                          (lambda logits, target: logits.mean().detach(), "no gradient")):  # fmt: skip
        with pytest.raises(TrainingError, match=message):
            fit(tiny(), make_pairs(4), epochs=1, loss=loss, **FAST)


def test_val_data_mapping_masks_unlike_train_data_is_refused(tmp_path: Path) -> None:
    # A validation set built alone lacks grey level 128: it would call 255 class 1, which
    # is class 2 in training, and score the wrong classes without a word.
    rng = np.random.default_rng(0)
    for split, levels in (("train", [0, 128, 255]), ("val", [0, 255])):
        for i in range(2):
            image = rng.integers(0, 255, (32, 32), dtype=np.uint8)
            write(tmp_path / split / "images" / f"{i}.png", image)
            write(
                tmp_path / split / "masks" / f"{i}.png", blocks(levels, (32, 32)).astype(np.uint8)
            )
    train = SegmentationDataset(tmp_path / "train" / "images", tmp_path / "train" / "masks")
    val_args = (tmp_path / "val" / "images", tmp_path / "val" / "masks")
    with pytest.raises(DatasetError, match=r"like=train_data") as err:
        fit(tiny(1, 3), train, SegmentationDataset(*val_args), epochs=1, **FAST)
    assert "mask_values=(0, 128, 255)" in str(err.value)
    assert "mask_values=(0, 255)" in str(err.value)
    history = fit(tiny(1, 3), train, SegmentationDataset(*val_args, like=train), epochs=1, **FAST)
    assert len(history) == 1 and "val/mean_iou" in history.epochs[0]


def test_logging_and_progress(caplog: pytest.LogCaptureFixture, capsys: Any) -> None:
    with caplog.at_level(logging.INFO, logger="unetseg"):
        fit(tiny(), make_pairs(4), make_pairs(1), epochs=1, **FAST)
    assert any("epoch 1: loss" in r.getMessage() for r in caplog.records)
    assert "epoch 1" not in capsys.readouterr().err  # progress=False: no bar
    fit(tiny(), make_pairs(4), epochs=1, batch_size=4, progress=True)
    assert "epoch 1" in capsys.readouterr().err


def test_plain_pairs_for_a_model_that_normalises_are_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # segment() normalises with the config's statistics; plain pairs train as given.
    model = tiny()
    model.config = model.config.replace(image_mean=(0.4,), image_std=(0.2,))
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        fit(model, make_pairs(4), epochs=1, **FAST)
    assert any("image_mean=[0.4]" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        fit(tiny(), make_pairs(4), epochs=1, **FAST)
    assert not [r for r in caplog.records if "image_mean" in r.getMessage()]


def test_ctrl_c_saves_interrupted_and_resume_is_bit_identical(tmp_path: Path) -> None:
    reference, data, val = build()
    fit(reference, data, val, epochs=3, **FAST)

    class Interrupt:
        def on_batch_end(self, step: int, loss: float) -> None:
            if step == 3:  # mid-epoch 2
                raise KeyboardInterrupt

    model, data, val = build()
    with pytest.raises(KeyboardInterrupt):
        fit(model, data, val, epochs=3, checkpoint_dir=tmp_path, callbacks=[Interrupt()], **FAST)
    assert (tmp_path / "interrupted.safetensors").exists()
    model, data, val = build()
    history = fit(model, data, val, epochs=3, checkpoint_dir=tmp_path, resume=True, **FAST)
    assert len(history) == 3 and history.steps == 6
    assert len(data.keys) == 1 + 8 * 3 - 3 * 4  # only the 3 batches after the interrupt ran
    assert same_weights(model, reference)


def test_resume_never_picks_an_older_runs_interrupted_checkpoint(tmp_path: Path) -> None:
    class Interrupt:
        def on_batch_end(self, step: int, loss: float) -> None:
            if step == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny(), make_pairs(8), epochs=2, checkpoint_dir=tmp_path, callbacks=[Interrupt()],
            batch_size=2, progress=False)  # fmt: skip
    # A new run in the same folder (1 step so far, then killed): resume went back to the
    # old run's interrupted.safetensors, which had more steps.
    fit(tiny(), make_pairs(4, seed=5), epochs=1, checkpoint_dir=tmp_path, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
    assert ckpt.find_latest(tmp_path).state["step"] == 1


def test_resume_uses_the_weight_decay_passed_and_warns_of_the_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fit(tiny(), make_pairs(4), epochs=1, checkpoint_dir=tmp_path, weight_decay=0.0, **FAST)
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        fit(tiny(), make_pairs(4), epochs=2, checkpoint_dir=tmp_path, resume=True,
            weight_decay=0.5, **FAST)  # fmt: skip
    # The checkpoint's 0.0 silently replaced it: the argument was ignored without a word.
    assert any("weight_decay=0.5" in r.getMessage() for r in caplog.records)
    groups = ckpt.read_checkpoint(tmp_path / "last.safetensors").state["optimizer"]
    assert groups["param_groups"][0]["weight_decay"] == 0.5


def test_a_checkpoint_dir_that_cannot_be_a_folder_fails_before_training(tmp_path: Path) -> None:
    # It was a raw FileExistsError from the first save, after an epoch of training.
    (tmp_path / "file").write_text("not a folder")

    seen: list[int] = []

    class Steps:
        def on_batch_end(self, step: int, loss: float) -> None:
            seen.append(step)

    for where in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(CheckpointError, match="cannot hold checkpoints"):
            fit(tiny(), make_pairs(4), epochs=1, checkpoint_dir=where, callbacks=[Steps()], **FAST)
    assert not seen


def test_resume_refuses_missing_corrupt_or_foreign_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        fit(tiny(), make_pairs(4), epochs=1, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="checkpoint_dir"):
        fit(tiny(), make_pairs(4), epochs=1, resume=True)
    fit(tiny(), make_pairs(4), epochs=1, checkpoint_dir=tmp_path, **FAST)
    other = UNet(1, 2, base_channels=8, depth=2)
    with pytest.raises(CheckpointError, match="build the same model"):
        fit(other, make_pairs(4), epochs=2, checkpoint_dir=tmp_path, resume=True, **FAST)
    last = tmp_path / "last.safetensors"
    last.write_bytes(last.read_bytes()[:-7])
    with pytest.raises(CheckpointError, match="corrupt"):
        fit(tiny(), make_pairs(4), epochs=2, checkpoint_dir=tmp_path, resume=True, **FAST)


CHILD = BUILD + textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    from unetseg import fit

    torch.set_num_threads(1)
    flag, ckpt_dir = Path(sys.argv[1]), sys.argv[2]


    class SlowAfterFirstEpoch:
        def on_epoch_end(self, epoch, record, history):
            if epoch == 1:
                flag.write_text("epoch 1 checkpointed")

        def on_batch_end(self, step, loss):
            if flag.exists():
                time.sleep(0.5)  # leave the parent time to kill us mid-epoch


    model, data, val = build()
    fit(model, data, val, epochs=4, batch_size=4, progress=False, checkpoint_dir=ckpt_dir,
        callbacks=[SlowAfterFirstEpoch()])
    """
)


def test_kill_9_mid_run_then_resume_is_bit_identical(tmp_path: Path) -> None:
    script, flag, ckpt_dir = tmp_path / "child.py", tmp_path / "flag", tmp_path / "ckpt"
    script.write_text(CHILD)
    # Somewhere in epoch 2 (or writing its checkpoint).
    kill_9_when_flagged(script, flag, str(ckpt_dir), after=0.7)

    reference, data, val = build()
    fit(reference, data, val, epochs=4, **FAST)
    assert ckpt.read_checkpoint(ckpt_dir / "last.safetensors").state["epoch"] >= 1
    model, data, val = build()
    history = fit(model, data, val, epochs=4, checkpoint_dir=ckpt_dir, resume=True, **FAST)
    assert len(data.keys) < 1 + 8 * 4  # resumed, not restarted
    assert len(history) == 4 and history.stop_reason == "epochs"
    assert same_weights(model, reference)


KILLED_MID_WRITE = BUILD + textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    from unetseg import fit

    torch.set_num_threads(1)
    flag, ckpt_dir = Path(sys.argv[1]), sys.argv[2]


    def stuck_fsync(fd):  # the checkpoint is in its temp file, not yet renamed: die here
        flag.write_text("writing last.safetensors")
        time.sleep(600)


    os.fsync = stuck_fsync
    model, data, _ = build()
    fit(model, data, epochs=1, batch_size=4, progress=False, checkpoint_dir=ckpt_dir)
    """
)


def test_kill_9_mid_write_leaves_a_temp_file_that_the_next_fit_removes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script, ckpt_dir = tmp_path / "child.py", tmp_path / "ckpt"
    script.write_text(KILLED_MID_WRITE)
    kill_9_when_flagged(script, tmp_path / "flag", str(ckpt_dir))
    (stale,) = ckpt_dir.iterdir()  # each such kill added one more, as large as a checkpoint
    assert stale.name.startswith(".last.safetensors.") and stale.stat().st_size > 10_000
    (ckpt_dir / "notes.txt").write_text("the user's")
    with caplog.at_level(logging.INFO, logger="unetseg"):
        fit(tiny(), make_pairs(4), epochs=1, checkpoint_dir=ckpt_dir, **FAST)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last.safetensors", "notes.txt"]
    assert stale.name in caplog.text


def test_only_rank_0_removes_leftover_checkpoint_temps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = leftover(tmp_path / "last.safetensors", pid=dead_pid())
    with monkeypatch.context() as patch:  # this process as rank 1 of a torchrun job
        patch.setattr(DistInfo, "is_main", property(lambda self: False))
        fit(tiny(), make_pairs(4), epochs=1, checkpoint_dir=tmp_path, **FAST)
    assert stale.exists()  # the folder is rank 0's, which may be writing in it
    fit(tiny(), make_pairs(4), epochs=1, checkpoint_dir=tmp_path, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_fraction_split_of_plain_pairs_and_bf16_autocast_on_cpu() -> None:
    history = fit(tiny(), make_pairs(8), 0.25, epochs=1, amp="bf16", **FAST)
    assert history.epochs[0]["images_per_s"] > 0
    assert math.isfinite(history.epochs[0]["val/mean_iou"])
    fast = cpu_has_fast_bf16()  # measured: 3x faster with AMX, slow without
    assert amp_dtype("auto", torch.device("cpu")) is (torch.bfloat16 if fast else None)
    assert amp_dtype("off", torch.device("cpu")) is None
    assert amp_dtype("auto", torch.device("cuda")) is torch.float16
    with pytest.raises(TrainingError, match="amp must be"):
        amp_dtype("int8", torch.device("cpu"))
    with pytest.raises(TrainingError, match="fraction"):
        fit(tiny(), make_pairs(8), 1.5, epochs=1, **FAST)


def test_fit_ignore_index_reads_that_value_as_void_in_data_built_without_one(
    tmp_path: Path,
) -> None:
    # The hidden-benchmark shape: index masks 0..2 plus void 3, ignore_index given to fit().
    rng = np.random.default_rng(0)
    for split, values in (("train", [0, 1, 2, 3]), ("val", [0, 2, 3])):
        for i in range(4 if split == "train" else 2):
            write(
                tmp_path / split / "images" / f"{i}.png", rng.integers(0, 255, (32, 32), np.uint8)
            )
            write(
                tmp_path / split / "masks" / f"{i}.png", blocks(values, (32, 32)).astype(np.uint8)
            )
    train = SegmentationDataset(tmp_path / "train" / "images", tmp_path / "train" / "masks")
    val = SegmentationDataset(tmp_path / "val" / "images", tmp_path / "val" / "masks", like=train)
    assert train.num_classes == 4
    model = tiny(1, 3)
    history = fit(model, train, val, epochs=1, ignore_index=3, **FAST)
    config = model.config
    assert (config.num_classes, config.ignore_index, config.mask_values) == (3, 3, (0, 1, 2))
    assert sorted(k for k in history.epochs[0] if k.startswith("val/iou/")) == [
        "val/iou/class_0", "val/iou/class_1", "val/iou/class_2",
    ]  # fmt: skip
    # A model that counts the void value as a class keeps the data as read.
    four = tiny(1, 4)
    fit(four, train, epochs=1, ignore_index=3, **FAST)
    assert four.config.num_classes == 4 and four.config.mask_values == (0, 1, 2, 3)
    built_with_other = SegmentationDataset(
        tmp_path / "train" / "images", tmp_path / "train" / "masks", ignore_index=255
    )
    with pytest.raises(TrainingError, match=r"ignore_index=3.*built with ignore_index=255"):
        fit(tiny(1, 3), built_with_other, epochs=1, ignore_index=3, **FAST)


def test_fit_ignore_index_for_colour_masks_asks_for_a_color_map() -> None:
    # A colour is void only through color_map; fit(ignore_index=2) names the colour (sorted
    # RGB order: black, green, red) and the fix.
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    mask = colours[blocks([0, 1, 2], (32, 32))]
    data = SegmentationDataset([np.zeros((32, 32, 3), np.uint8)] * 2, [mask, mask])
    with pytest.raises(TrainingError, match=r"class 2 is #ff0000.*color_map="):
        fit(tiny(3, 2), data, epochs=1, ignore_index=2, **FAST)


def test_fit_ignore_index_on_renumbered_grey_masks_is_never_trained_as_a_class() -> None:
    # Grey masks 0/1/255: 255 is read as class 2, so "the model counts it as a class" would
    # leave the loss skipping a label that never occurs and train the void as class 2.
    mask = blocks([0, 1, 255], (32, 32)).astype(np.uint8)
    data = SegmentationDataset([np.zeros((32, 32), np.uint8)] * 2, [mask, mask])
    assert data.num_classes == 3
    with pytest.raises(TrainingError, match=r"num_classes=2 but the model has num_classes=3"):
        fit(tiny(1, 3), data, epochs=1, ignore_index=255, **FAST)
    binary = blocks([0, 255], (32, 32)).astype(np.uint8)
    data = SegmentationDataset([np.zeros((32, 32), np.uint8)] * 2, [binary, binary])
    with pytest.raises(DatasetError, match="leave ignore_index out"):
        fit(tiny(1, 2), data, epochs=1, ignore_index=255, **FAST)


def test_validation_tiles_images_too_big_for_one_pass_as_segment_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Validation ran each image whole: 14.6 GB for one 8000 x 8000 image at the default
    # width, and OOM beyond. The budget is shrunk here so a 96 x 128 image counts as huge.
    import unetseg.infer as infer_module
    from unetseg import segment
    from unetseg.metrics import confusion_matrix, scores_from_confusion

    model = tiny()
    monkeypatch.setattr(
        infer_module, "DEFAULT_MAX_MEMORY", infer_module.estimate_memory(model.config, 48, 48)
    )
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 96, 128, generator=g)
    val = [(image, (image[0] > 0.5).long())]
    seen: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    history = fit(model, make_pairs(4), val, epochs=1, amp="off", **FAST)
    assert (96, 128) not in seen and max(h * w for h, w in seen) <= 48 * 48
    predicted = torch.from_numpy(segment(model, image, amp="off", progress=False).astype(np.int64))
    expected = scores_from_confusion(confusion_matrix(predicted, val[0][1], 2)).mean_iou
    # segment() runs channels_last: a few near-tied pixels may differ.
    assert history.epochs[0]["val/mean_iou"] == pytest.approx(expected, abs=2e-3)


def test_one_sample_with_a_validation_fraction_says_how_to_train_without_one(
    tmp_path: Path,
) -> None:
    # "cannot split 1 sample(s); add more images": also what `unetseg train` printed for a
    # single pair, whose default --val-fraction is 0.2, with no word of the flag.
    from unetseg.cli import main

    image = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    write(tmp_path / "images" / "a.png", image)
    write(tmp_path / "masks" / "a.png", (image > 128).astype(np.uint8) * 255)
    data = SegmentationDataset(tmp_path / "images", tmp_path / "masks")
    for val_data in (0.5, 0.2):
        with pytest.raises(TrainingError, match=r"1 item.*val_data=None.*--val-fraction 0"):
            fit(tiny(), data, val_data, epochs=1, **FAST)
    with pytest.raises(TrainingError, match="--val-fraction 0"):
        fit(tiny(), [(torch.rand(1, 8, 8), torch.zeros(8, 8, dtype=torch.long))], 0.5, epochs=1)
    argv = ["train", str(tmp_path / "images"), str(tmp_path / "masks"), "--out"]
    assert main([*argv, str(tmp_path / "m"), "--epochs", "1", "--depth", "1",
                 "--val-fraction", "0", "--no-progress"]) == 0  # fmt: skip


def test_index_masks_lacking_classes_read_as_grey_name_class_names_not_a_smaller_model() -> None:
    # CamVid-style labels 0..10 plus void 11, where these images hold only 0, 1, 3, 5, 8:
    # the values read as five grey levels, and "build UNet(num_classes=5)" would have
    # trained a model whose class 2 is label 3.
    mask = blocks([0, 1, 3, 5, 8, 11], (32, 48)).astype(np.uint8)
    images = [np.zeros((32, 48, 3), np.uint8)] * 2
    data = SegmentationDataset(images, [mask, mask], progress=False)
    with pytest.raises(TrainingError, match=r"values \[0, 1, 3, 5, 8\].*class_names=\[\.\.\.\] \(11 names\) and ignore_index=11"):  # fmt: skip
        fit(tiny(3, 11), data, epochs=1, ignore_index=11, **FAST)
    names = [f"c{i}" for i in range(11)]
    data = SegmentationDataset(images, [mask, mask], class_names=names, ignore_index=11)
    model = tiny(3, 11)
    fit(model, data, epochs=1, **FAST)
    assert model.config.num_classes == 11 and model.config.mask_encoding == "index"
