"""fit() on a model trained before: what its config keeps, warnings, frozen layers, Ctrl-C."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import write
from unetseg import SegmentationDataset, UNet, fit

RGB = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
FAST = {"batch_size": 2, "patch_size": 16, "progress": False}


def colour_data(
    root: Path, colors: list[tuple[int, int, int]], *, brightness: float = 0.0, n: int = 4
) -> tuple[Path, Path]:
    """Colour masks of vertical stripes; images brighter where the class number is higher."""
    rng = np.random.default_rng(len(colors))
    for i in range(n):
        classes = np.roll(np.arange(16) * len(colors) // 16, 3 * i)[None].repeat(16, axis=0)
        image = rng.random((16, 16, 3)) * 60 + classes[..., None] * 50 + brightness * 255
        write(root / "images" / f"{i}.png", np.clip(image, 0, 255).astype(np.uint8))
        write(root / "masks" / f"{i}.png", np.array(colors, np.uint8)[classes])
    return root / "images", root / "masks"


def tiny(num_classes: int = 3) -> UNet:
    torch.manual_seed(0)
    return UNet(3, num_classes, base_channels=4, depth=1)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_training_further_keeps_the_models_class_names(tmp_path: Path) -> None:
    data = SegmentationDataset(*colour_data(tmp_path / "a", RGB), class_names=["bg", "fg", "rim"])
    model = tiny()
    fit(model, data, epochs=1, **FAST)
    # More images of the same classes, read without names: class_0.. must not replace them.
    more = SegmentationDataset(*colour_data(tmp_path / "b", RGB, n=3))
    history = fit(model, more, val_data=0.4, epochs=1, **FAST)
    assert model.config.class_names == ("bg", "fg", "rim")
    assert "val/iou/rim" in history.epochs[0]
    assert model.config.metrics is not None and "iou/rim" in model.config.metrics


def test_fit_without_validation_drops_an_earlier_fits_metrics(tmp_path: Path) -> None:
    data = SegmentationDataset(*colour_data(tmp_path, RGB))
    model = tiny()
    fit(model, data, val_data=0.25, epochs=1, **FAST)
    assert model.config.metrics
    fit(model, data, epochs=1, **FAST)  # new weights, nothing scored them
    assert model.config.metrics is None
    card = (model.save_pretrained(tmp_path / "saved") / "README.md").read_text()
    assert "Validation metrics" not in card


def test_data_mapping_classes_unlike_the_model_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny()
    fit(model, SegmentationDataset(*colour_data(tmp_path / "a", RGB)), epochs=1, **FAST)
    other = [(0, 0, 0), (0, 0, 255), (0, 255, 0)]  # green is class 2 here, class 1 before
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        fit(model, SegmentationDataset(*colour_data(tmp_path / "b", other)), epochs=1, **FAST)
    (message,) = [m for m in warnings_of(caplog) if "maps mask values" in m]
    assert "(0, 0, 255)" in message and "like=model" in message


def test_data_normalised_far_from_what_the_weights_learned_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny()
    fit(model, SegmentationDataset(*colour_data(tmp_path / "a", RGB)), epochs=1, **FAST)
    saved = model.save_pretrained(tmp_path / "saved")
    learned = model.config.image_mean
    brighter = colour_data(tmp_path / "b", RGB, brightness=0.2)
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        fit(UNet.from_pretrained(saved), SegmentationDataset(*brighter), epochs=1, **FAST)
    (message,) = warnings_of(caplog)
    assert f"{learned[0]:.3f}" in message and "like=model" in message
    assert "mean=model.config.image_mean" in message
    caplog.clear()
    fewer = colour_data(tmp_path / "c", RGB, n=3)  # a subset: statistics a few percent off
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        for data in (SegmentationDataset(*brighter, like=saved), SegmentationDataset(*fewer)):
            fit(UNet.from_pretrained(saved), data, epochs=1, **FAST)
    assert warnings_of(caplog) == []


def test_a_new_head_keeps_the_warning_on_statistics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny()
    fit(model, SegmentationDataset(*colour_data(tmp_path / "a", RGB)), epochs=1, **FAST)
    head = UNet.from_pretrained(model.save_pretrained(tmp_path / "saved"), num_classes=2)
    new = colour_data(tmp_path / "b", [(9, 9, 9), (200, 0, 200)], brightness=0.3)
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        fit(head, SegmentationDataset(*new), epochs=1, **FAST)
    assert ["normalises images" in m for m in warnings_of(caplog)] == [True]
    caplog.clear()
    head = UNet.from_pretrained(tmp_path / "saved", num_classes=2)
    stats = {"mean": head.config.image_mean, "std": head.config.image_std}
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        fit(head, SegmentationDataset(*new, **stats), epochs=1, **FAST)
    assert warnings_of(caplog) == []


def test_frozen_layers_keep_their_weights_and_batchnorm_statistics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tiny()
    encoder = [model.stem, *model.down]
    for part in encoder:
        part.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = SegmentationDataset(*colour_data(tmp_path, RGB))
    with caplog.at_level(logging.INFO, logger="unetseg"):
        # Two epochs with validation: validation must not put them back in train mode.
        fit(model, data, val_data=0.25, epochs=2, **FAST)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "head.weight" in changed and "up.0.conv.1.running_mean" in changed
    assert not {k for k in changed if k.startswith(("stem.", "down."))}
    assert any("are frozen" in r.getMessage() and "BatchNorm" in r.getMessage()
               for r in caplog.records)  # fmt: skip


class Interrupt:
    """Snapshots the weights after epoch 1, then presses Ctrl-C in epoch 2."""

    def __init__(self) -> None:
        self.record: dict[str, float] = {}
        self.weights: dict[str, torch.Tensor] = {}

    def on_epoch_end(self, epoch: int, record: dict[str, float], history: Any) -> None:
        self.record = record
        if self.model is not None:
            self.weights = {k: v.clone() for k, v in self.model.state_dict().items()}

    def on_batch_end(self, step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    model: UNet | None = None


def test_ctrl_c_leaves_the_config_describing_the_data_trained_on(tmp_path: Path) -> None:
    # A notebook stops a fine-tune by hand, then saves: the config must hold the new data's
    # classes and statistics, and the metrics of the weights the model holds.
    data = SegmentationDataset(*colour_data(tmp_path, RGB, n=5), class_names=["a", "b", "c"])
    model = tiny()
    interrupt = Interrupt()
    interrupt.model = model
    with pytest.raises(KeyboardInterrupt):
        fit(model, data, val_data=0.2, epochs=3, callbacks=[interrupt], **FAST)
    assert model.config.class_names == ("a", "b", "c")
    assert model.config.image_mean == data.mean
    assert model.config.metrics is not None
    assert model.config.metrics["mean_iou"] == interrupt.record["val/mean_iou"]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in interrupt.weights.items())


def test_ctrl_c_message_starts_its_own_line_and_claims_no_checkpoint_it_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = SegmentationDataset(*colour_data(tmp_path, RGB), progress=False)
    handler = logging.StreamHandler(sys.stderr)  # the stream the bar writes to
    logging.getLogger("unetseg").addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(tiny(), data, epochs=3, callbacks=[Interrupt()], **{**FAST, "progress": True})
    finally:
        logging.getLogger("unetseg").removeHandler(handler)
    before, after = capsys.readouterr().err.split("interrupted at step 3")
    assert before[-1] in "\r\n"  # the bar was closed, not written over
    assert after == "\n"  # no checkpoint_dir: nothing saved, nothing claimed
