"""The examples run end to end (in a tiny mode: a second or two of training each)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import unetseg

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shapes_are_seeded_and_labelled() -> None:
    shapes = load("shapes")
    images, labels = shapes.scenes(3, seed=1, height=40, width=56)
    again, _ = shapes.scenes(3, seed=1, height=40, width=56)
    assert images.shape == (3, 40, 56, 3) and labels.shape == (3, 40, 56)
    np.testing.assert_array_equal(images, again)
    assert set(np.unique(labels)) <= {0, 1, 2}
    colours = shapes.to_color_mask(labels[0])
    assert colours.shape == (40, 56, 3) and colours.dtype == np.uint8


@pytest.mark.slow
def test_numpy_arrays_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    mask = load("numpy_arrays").main(max_time=1.0, n_train=4)
    assert mask.shape == (160, 200) and mask.dtype == np.uint8
    assert int(mask.max()) < 3


@pytest.mark.slow
def test_finetune_example(tmp_path: Path) -> None:
    miou = load("finetune").main(tmp_path, pretrain_time=1.0, finetune_time=1.0, n_train=4)
    assert math.isnan(miou) or 0.0 <= miou <= 1.0
    binary = unetseg.UNet.from_pretrained(tmp_path / "binary")
    shapes = unetseg.UNet.from_pretrained(tmp_path / "shapes")
    assert binary.config.num_classes == 2 and binary.config.mask_values == (0, 255)
    assert shapes.config.num_classes == 3
    assert shapes.config.class_names == ("background", "circle", "square")
    # Fine-tuning keeps the input normalisation the loaded layers were trained with.
    assert shapes.config.image_mean == binary.config.image_mean


def test_train_on_folder_without_data_says_how_to_call_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load("train_on_folder")
    monkeypatch.setattr(module, "ISBI", tmp_path / "absent")
    with pytest.raises(SystemExit):
        module.parse_args([])
    assert "give IMAGES and MASKS" in capsys.readouterr().err
    args = module.parse_args(["imgs", "msks", "--max-time", "5"])
    assert args.images == Path("imgs") and args.max_time == 5.0
