"""The ``unetseg`` command line: in-process ``main([...])`` calls on tiny data and models."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetseg import UNet
from unetseg.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["--base-channels", "4", "--depth", "2", "--patch-size", "32", "--no-progress"]


def _write_data(root: Path, n: int = 6, size: int = 32) -> tuple[Path, Path]:
    """Grey images with a bright square; 0/255 masks of the square."""
    rng = np.random.default_rng(0)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        top, left = rng.integers(0, size // 2, 2)
        mask[top : top + size // 2, left : left + size // 2] = 255
        image = (rng.integers(0, 60, (size, size)) + (mask > 0) * 150).astype(np.uint8)
        Image.fromarray(image).save(images / f"img{i}.png")
        Image.fromarray(mask).save(masks / f"img{i}_mask.png")
    (images / ".DS_Store").write_bytes(b"junk")
    return images, masks


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(model folder, images, masks): one tiny training run shared by the tests."""
    root = tmp_path_factory.mktemp("cli")
    images, masks = _write_data(root)
    out = root / "model"
    code = main(["train", str(images), str(masks), "--out", str(out), "--epochs", "1", *TINY])
    assert code == 0
    return out, images, masks


def test_train_saves_a_loadable_model_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks = _write_data(tmp_path)
    out = tmp_path / "model"
    argv = ["train", str(images), str(masks), "--out", str(out), "--epochs", "1", *TINY]
    assert main([*argv, "--val-fraction", "0.3", "--class-names", "bg,cell"]) == 0
    printed = capsys.readouterr().out
    assert "validation mean IoU" in printed
    assert str(out) in printed
    assert (out / "config.json").is_file()
    assert (out / "model.safetensors").is_file()
    model = UNet.from_pretrained(out)
    assert (model.in_channels, model.num_classes) == (1, 2)
    assert model.config.mask_values == (0, 255)
    assert model.config.class_names == ("bg", "cell")


def test_segment_writes_masks_in_the_training_encoding_and_overlays(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, images, _ = trained
    out = tmp_path / "pred"
    single = tmp_path / "extra.png"
    Image.open(images / "img0.png").resize((40, 24)).save(single)  # another size, a file
    argv = ["segment", str(model), str(images), str(single), "--out", str(out), "--overlay"]
    assert main([*argv, "--batch-size", "4", "--no-progress"]) == 0
    assert "wrote 7 mask(s) and overlays" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [f"img{i}{suffix}.png" for i in range(6) for suffix in ("", "_overlay")]
        + ["extra.png", "extra_overlay.png"]
    )
    for i in range(6):
        with Image.open(out / f"img{i}.png") as picture:
            mask = np.asarray(picture)
        assert mask.shape == (32, 32)
        assert set(np.unique(mask)) <= {0, 255}
    with Image.open(out / "extra.png") as picture:
        assert picture.size == (40, 24)
    with Image.open(out / "img0_overlay.png") as picture:
        assert picture.mode == "RGB"


def test_segment_refuses_inputs_that_would_overwrite_each_other(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, images, _ = trained
    twin = tmp_path / "img0.png"
    twin.write_bytes((images / "img0.png").read_bytes())
    argv = ["segment", str(model), str(images / "img0.png"), str(twin), "--out", str(tmp_path)]
    assert main(argv) == 1
    assert "img0.png" in capsys.readouterr().err


def test_segment_refuses_to_write_masks_over_its_inputs(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, images, _ = trained
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes((images / "img0.png").read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    argv = ["segment", str(model), str(tmp_path), "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "would overwrite input image(s)" in err and "a.png" in err and "b.jpg" not in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_segment_names_clash_without_case_as_on_windows_and_macos(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Case-insensitive file systems (Windows, macOS) would write both masks to one file,
    # and the mask of A.PNG over A.PNG itself.
    model, images, _ = trained
    for name in ("one/Cat.png", "two/cat.jpg", "own/A.PNG"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes((images / "img0.png").read_bytes())
    clash = [str(tmp_path / "one/Cat.png"), str(tmp_path / "two/cat.jpg")]
    assert main(["segment", str(model), *clash, "--out", str(tmp_path / "out")]) == 1
    assert "cat.png <- " in capsys.readouterr().err
    own = tmp_path / "own"
    assert main(["segment", str(model), str(own), "--out", str(own), "--no-progress"]) == 1
    assert "would overwrite input image(s)" in capsys.readouterr().err
    assert [p.name for p in own.iterdir()] == ["A.PNG"]


def test_non_ascii_names_survive_a_windows_code_page_stdout(
    trained: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows pipes and redirects encode stdout with the ANSI code page, strictly.
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="cp1252"))
    model, images, _ = trained
    out = tmp_path / "猫"
    assert main(["segment", str(model), str(images / "img0.png"), "--out", str(out)]) == 0
    sys.stdout.flush()
    assert (out / "img0.png").is_file() and b"\\u732b" in raw.getvalue()


def test_evaluate_prints_a_table_and_json_with_every_class(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, images, masks = trained
    assert main(["evaluate", str(model), str(images), str(masks)]) == 0
    table = capsys.readouterr().out
    for word in ("background", "foreground", "IoU", "Dice", "mean IoU", "pixel accuracy"):
        assert word in table
    assert main(["evaluate", str(model), str(images), str(masks), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 6
    assert report["pixels"] == 6 * 32 * 32
    assert [c["name"] for c in report["classes"]] == ["background", "foreground"]
    assert 0 <= report["mean_iou"] <= 1


def test_evaluate_no_progress_silences_the_reading_bars(
    trained: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from unetseg import _store

    monkeypatch.setattr(_store, "_PROGRESS_DELAY", 0.0)  # bars show at once
    model, images, masks = trained
    assert main(["evaluate", str(model), str(images), str(masks), "--json"]) == 0
    assert "reading" in capsys.readouterr().err
    assert main(["evaluate", str(model), str(images), str(masks), "--no-progress"]) == 0
    assert "reading" not in capsys.readouterr().err


def test_evaluate_decodes_masks_with_the_models_mapping(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A test set of empty (all 0) masks: rediscovering the encoding would fail or call 0
    # a class of its own; the model's mapping reads 0 as background.
    model, images, _ = trained
    empty = tmp_path / "masks"
    empty.mkdir()
    for i in range(6):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(empty / f"img{i}.png")
    assert main(["evaluate", str(model), str(images), str(empty), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    background, foreground = report["classes"]
    assert background["pixels"] == 6 * 32 * 32 and foreground["pixels"] == 0
    # A value the model never saw is an error naming the file, not a silent class.
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(empty / "img3.png")
    assert main(["evaluate", str(model), str(images), str(empty)]) == 1
    err = capsys.readouterr().err
    assert "img3.png" in err and "7" in err


def test_export_writes_onnx_that_runtime_runs(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    model, _, _ = trained
    path = tmp_path / "model.onnx"
    assert main(["export", str(model), str(path)]) == 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"image": np.zeros((1, 1, 29, 35), np.float32)})
    assert logits.shape == (1, 2, 29, 35)


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_missing_folder_is_exit_1_naming_it(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no_such_images"
    if command == "train":
        argv = ["train", str(missing), str(tmp_path), "--out", str(tmp_path / "m"), "--epochs", "1"]
    else:
        argv = ["evaluate", str(tmp_path / "model"), str(missing), str(tmp_path)]
        UNet(1, 2, base_channels=4, depth=1).save_pretrained(tmp_path / "model")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "flags",
    [["--epochs", "0"], ["--epochs", "two"], ["--max-time", "-5"], ["--max-time", "nan"],
     ["--val-fraction", "1"], ["--resume"]],
)  # fmt: skip
def test_bad_flag_values_are_usage_errors(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "m"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and flags[0] in err


def test_version_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("unetseg ")
    assert main([]) == 2


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "unetseg", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_python_dash_m_help_and_a_one_line_error(tmp_path: Path) -> None:
    shown = _run("--help")
    assert shown.returncode == 0
    for command in ("train", "segment", "evaluate", "export", "examples:"):
        assert command in shown.stdout
    # A missing input: exit 1 and one line on stderr, no traceback.
    failed = _run("export", str(tmp_path / "nowhere"), str(tmp_path / "m.onnx"))
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "nowhere" in lines[0]


def _self_accuracy(
    model: Path, images: Path, tmp: Path, capsys: pytest.CaptureFixture[str]
) -> float:
    """Segment, then score the masks written against the model: 1.0 iff they decode back."""
    pred = tmp / "pred"
    assert main(["segment", str(model), str(images), "--out", str(pred), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), str(images), str(pred), "--json"]) == 0
    return float(json.loads(capsys.readouterr().out)["pixel_accuracy"])


def test_written_masks_decode_back_to_the_same_classes(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, images, _ = trained
    assert _self_accuracy(model, images, tmp_path, capsys) == 1.0


def test_colour_masks_train_segment_and_evaluate_in_their_colours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, grey = _write_data(tmp_path)
    colour = tmp_path / "colour"
    colour.mkdir()
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    for path in sorted(grey.glob("*.png")):
        with Image.open(path) as picture:
            classes = (np.asarray(picture) > 0).astype(np.uint8)
        classes[:2] = 2  # a third class along the top edge
        Image.fromarray(palette[classes]).save(colour / path.name)
    colours = json.dumps(["#000000", "#ff0000", "#00ff00"])
    out = tmp_path / "model"
    argv = ["train", str(images), str(colour), "--out", str(out), "--epochs", "1", *TINY]
    assert main([*argv, "--color-map", colours]) == 0
    assert UNet.from_pretrained(out).config.class_colors == tuple(map(tuple, palette.tolist()))
    capsys.readouterr()
    assert main(["evaluate", str(out), str(images), str(colour)]) == 0  # RGB truth
    assert "class_2" in capsys.readouterr().out
    assert _self_accuracy(out, images, tmp_path, capsys) == 1.0  # palette PNGs it wrote


def test_an_unreadable_input_names_itself_and_its_position(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, images, _ = trained
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    argv = ["segment", str(model), str(images), str(bad), "--out", str(tmp_path / "p")]
    assert main([*argv, "--batch-size", "4", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: input 7") and "bad.png" in err
    # The six good inputs before it were written as they were segmented.
    written = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert written == [f"img{i}.png" for i in range(6)]


@pytest.mark.parametrize("command", ["train", "segment", "evaluate"])
def test_an_unusable_device_is_exit_1_naming_it(
    command: str,
    trained: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, images, masks = trained
    argv = {
        "train": ["train", str(images), str(masks), "--out", str(tmp_path), *TINY],
        "segment": ["segment", str(model), str(images), "--out", str(tmp_path), "--no-progress"],
        "evaluate": ["evaluate", str(model), str(images), str(masks)],
    }[command]
    assert main([*argv, "--device", "cuda:99"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda:99'") and "Traceback" not in err


def test_ctrl_c_is_exit_130(
    trained: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("unetseg.cli._segment.segment_iter", interrupted)
    model, images, _ = trained
    assert (
        main(["segment", str(model), str(images), "--out", str(tmp_path), "--no-progress"]) == 130
    )


@pytest.mark.parametrize("saved", [False, True])
def test_ctrl_c_in_train_offers_resume_only_when_a_checkpoint_exists(
    saved: bool,
    trained: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = tmp_path / "ckpt"

    def interrupted(*args: object, **kwargs: object) -> None:
        if saved:  # as fit() does on Ctrl-C once the loop runs
            ckpt.mkdir()
            (ckpt / "interrupted.safetensors").write_bytes(b"")
        raise KeyboardInterrupt  # before the loop: nothing saved

    monkeypatch.setattr("unetseg.cli._train.fit", interrupted)
    _, images, masks = trained
    argv = ["train", str(images), str(masks), "--out", str(tmp_path / "m"), *TINY]
    assert main([*argv, "--checkpoint-dir", str(ckpt)]) == 130
    err = capsys.readouterr().err
    assert ("--resume" in err) is saved
    assert err.rstrip().endswith("interrupted") and "Traceback" not in err


@pytest.mark.parametrize("opset", ["9", "10"])
def test_export_with_a_too_old_opset_is_one_error_line_and_no_stdout(
    opset: str,
    trained: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("onnx")
    model, _, _ = trained
    path = tmp_path / "m.onnx"
    assert main(["export", str(model), str(path), "--opset", opset]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # torch prints its whole graph there when the export fails
    assert err.startswith("error: opset ") and "11" in err and len(err.splitlines()) == 1
    assert not path.exists()


def test_segment_and_evaluate_multi_band_files_with_overlays_of_chosen_bands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Multi-page TIFFs were read as their first page (a 1-band image for a 4-band model),
    # and overlays could not show the bands a user would call red, green and blue.
    from unetseg.visualize import overlay

    rng = np.random.default_rng(0)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(2):
        bands = rng.integers(0, 4096, (4, 16, 24), dtype=np.uint16)
        pages = [Image.fromarray(band) for band in bands]
        pages[0].save(images / f"{i}.tif", save_all=True, append_images=pages[1:])
        Image.fromarray((bands[3] > 2048).astype(np.uint8)).save(masks / f"{i}.png")
    model = UNet(in_channels=4, num_classes=2, base_channels=4, depth=1)
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "pred"
    argv = ["segment", str(tmp_path / "model"), str(images), "--out", str(out), "--overlay"]
    assert main([*argv, "--bands", "3,2,1", "--no-progress"]) == 0
    with Image.open(out / "0.png") as saved:
        mask = np.asarray(saved)
    with Image.open(out / "0_overlay.png") as saved:
        shown = np.asarray(saved)
    expected = overlay(images / "0.tif", mask, model, bands=(3, 2, 1))
    np.testing.assert_array_equal(shown, np.asarray(expected))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "model"), str(images), str(masks), "--json",
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["pixels"] == 2 * 16 * 24
    assert main([*argv, "--bands", "3,2"]) == 2
