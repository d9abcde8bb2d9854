"""save_pretrained / from_pretrained / push_to_hub: round trips, hostile folders, the Hub offline."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import shutil
import struct
import textwrap
import types
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoUrl
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from helpers import dead_pid, kill_9_when_flagged, leftover
from unetseg import ConfigError, UNet, WeightsError, _locate, hub, safe_load
from unetseg.safe_load import MAX_HEADER_BYTES

FILES = {"config.json", "model.safetensors", "README.md"}


class Payload:
    """Pickles to "create this file": a hostile checkpoint, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def trained_tiny(**arch: Any) -> UNet:
    """A tiny UNet with moved BatchNorm statistics and full metadata."""
    torch.manual_seed(0)
    model = UNet(1, 3, **{"base_channels": 4, "depth": 2, **arch})
    model.train()
    with torch.no_grad():
        for _ in range(2):  # BatchNorm running stats away from their defaults
            model(torch.randn(2, 1, 16, 16) * 3 + 1)
    model.config = model.config.replace(
        class_names=("background", "cell", "membrane"),
        mask_encoding="grey",
        mask_values=(0, 128, 255),
        class_colors=((0, 0, 0), (255, 0, 0), (0, 255, 0)),
        image_mean=(0.5,),
        image_std=(0.25,),
        ignore_index=7,
        metrics={"mean_iou": 0.75, "iou/cell": 0.5},
    )
    return model.eval()


def outputs(model: UNet) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return model(torch.randn(2, 1, 19, 23))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_tiny().save_pretrained(tmp_path_factory.mktemp("template") / "ckpt")


@pytest.fixture
def saved(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a saved checkpoint, which the test may damage."""
    return Path(shutil.copytree(template, tmp_path / "ckpt"))


@pytest.fixture
def no_tensor_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if tensor data is read (refusals must come before)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tensor data was read before the checkpoint was refused")

    monkeypatch.setattr(safe_load, "load_file", refuse)


# --- round trip -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch",
    [{}, {"norm": "group", "base_channels": 8, "upsample": "bilinear"}, {"norm": "none"}],
)
def test_round_trip_is_exact(tmp_path: Path, arch: dict[str, Any]) -> None:
    model = trained_tiny(**arch)
    folder = model.save_pretrained(tmp_path / "ckpt")
    assert {p.name for p in folder.iterdir()} == FILES
    loaded = UNet.from_pretrained(folder)
    assert not loaded.training
    assert torch.equal(outputs(model), outputs(loaded))
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)  # BN stats too
    assert loaded.config == model.config
    assert loaded.config.metrics == model.config.metrics
    assert isinstance(loaded.config.class_colors, tuple)  # not lists, as JSON gave them


def test_batchnorm_statistics_are_saved(saved: Path) -> None:
    tensors = load_file(saved / "model.safetensors")
    assert "stem.1.running_mean" in tensors and "stem.1.num_batches_tracked" in tensors
    assert int(tensors["stem.1.num_batches_tracked"]) == 2
    assert not torch.equal(tensors["stem.1.running_var"], torch.ones(4))


def test_config_json_is_the_config(saved: Path) -> None:
    data = json.loads((saved / "config.json").read_text())
    data.pop("weights_sha256")  # tested below, with atomic saving
    assert data == trained_tiny().config.to_dict()
    assert data["format_version"] == 1


def test_map_location_and_os_pathlike(saved: Path) -> None:
    model = UNet.from_pretrained(str(saved), map_location=torch.device("cpu"))
    assert next(model.parameters()).device.type == "cpu"


def test_saving_again_overwrites(saved: Path) -> None:
    other = UNet(1, 2, base_channels=4, depth=2)
    other.save_pretrained(saved)
    assert UNet.from_pretrained(saved).config.num_classes == 2


def test_save_refuses_a_config_that_no_longer_fits(tmp_path: Path) -> None:
    model = UNet(1, 3, base_channels=4, depth=2)
    model.config = model.config.replace(num_classes=4)
    with pytest.raises(ConfigError, match=r"head"):
        model.save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_save_refuses_weights_that_would_never_load(tmp_path: Path, dtype: torch.dtype) -> None:
    model = UNet(1, 3, base_channels=4, depth=2).to(dtype)
    with pytest.raises(WeightsError, match=rf"{dtype}.*model\.float\(\)"):
        model.save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()
    UNet.from_pretrained(model.float().save_pretrained(tmp_path / "x"))


def test_save_to_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(WeightsError, match=r"is a file"):
        UNet(1, 2, base_channels=4, depth=2).save_pretrained(tmp_path / "f")


# --- atomic saving ------------------------------------------------------------------------


@pytest.mark.parametrize("fail_at", [1, 2, 3])
@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
)
def test_failed_save_keeps_previous_checkpoint(
    saved: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int, error: BaseException
) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == fail_at:  # the disk fills up while writing file number `fail_at`
            raise error
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    bigger = UNet(1, 5, base_channels=8, depth=2)
    with pytest.raises(WeightsError if isinstance(error, OSError) else KeyboardInterrupt):
        bigger.save_pretrained(saved)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before  # no temp files either
    assert UNet.from_pretrained(saved).config.num_classes == 3


def test_failed_rename_keeps_previous_checkpoint(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def fail(*args: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(WeightsError, match="previous files kept"):
        UNet(1, 5, base_channels=4, depth=2).save_pretrained(saved)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before


def same_layers_other_weights() -> UNet:
    """A model whose weights fit trained_tiny()'s config: a mix of the two loads silently."""
    torch.manual_seed(5)
    return UNet(1, 3, base_channels=4, depth=2).eval()


def _fail_on_second_replace(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    real, calls = os.replace, []

    def replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 2:  # config.json, after model.safetensors was replaced
            raise error
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("error", [PermissionError(errno.EACCES, "in use"), KeyboardInterrupt()])
def test_a_rename_failing_midway_puts_the_previous_files_back(
    saved: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    _fail_on_second_replace(monkeypatch, error)
    with pytest.raises(WeightsError if isinstance(error, OSError) else KeyboardInterrupt):
        same_layers_other_weights().save_pretrained(saved)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before  # no temp files either
    assert torch.equal(outputs(UNet.from_pretrained(saved)), outputs(trained_tiny()))


def test_a_mix_left_between_renames_is_refused_not_loaded(
    saved: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_hard_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    # Without hard links the replaced weights cannot be put back: new weights, old config.
    monkeypatch.setattr(os, "link", no_hard_links)
    _fail_on_second_replace(monkeypatch, OSError(errno.EIO, "Input/output error"))
    with caplog.at_level(logging.WARNING, logger="unetseg"), pytest.raises(WeightsError):
        same_layers_other_weights().save_pretrained(saved)
    monkeypatch.undo()
    assert "mixes old and new files" in caplog.text
    with pytest.raises(WeightsError, match="come from different saves") as err:
        UNet.from_pretrained(saved)
    assert "model.save_pretrained(folder)" in str(err.value)


KILLED_BETWEEN_RENAMES = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    import torch

    from unetseg import UNet

    flag, folder = Path(sys.argv[1]), Path(sys.argv[2])
    real_replace = os.replace


    def replace(src, dst):
        if Path(dst).name == "config.json":  # model.safetensors is already replaced: die here
            flag.write_text("between renames")
            time.sleep(600)
        real_replace(src, dst)


    os.replace = replace
    torch.manual_seed(5)
    UNet(1, 3, base_channels=4, depth=2).save_pretrained(folder)
    """
)


def test_kill_9_between_renames_is_refused_and_the_next_save_cleans_up(
    saved: Path, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(KILLED_BETWEEN_RENAMES)
    kill_9_when_flagged(script, tmp_path / "flag", str(saved))
    assert any(p.name.startswith(".config.json.") for p in saved.iterdir())  # its temp file
    with pytest.raises(WeightsError, match="come from different saves"):
        UNet.from_pretrained(saved)
    model = same_layers_other_weights()
    model.save_pretrained(saved)
    assert {p.name for p in saved.iterdir()} == FILES
    assert torch.equal(outputs(UNet.from_pretrained(saved)), outputs(model))


def test_save_records_the_weights_digest_in_both_files(saved: Path) -> None:
    blob = (saved / "model.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", blob[:8])
    digest = hashlib.sha256(blob[8 + header_len :]).hexdigest()  # the tensor data
    assert json.loads((saved / "config.json").read_text())["weights_sha256"] == digest
    with safe_open(saved / "model.safetensors", "pt") as handle:
        assert handle.metadata()["weights_sha256"] == digest


def _strip_records(folder: Path, *, config: bool = False, weights: bool = False) -> None:
    """Make one file or both look written before unetseg recorded the weights' digest."""
    if config:
        data = json.loads((folder / "config.json").read_text())
        del data["weights_sha256"]
        (folder / "config.json").write_text(json.dumps(data))
    if weights:
        path = folder / "model.safetensors"
        save_file(load_file(path), path, metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("mix", "fix"),
    [
        ("two saves", r'set "weights_sha256": "[0-9a-f]{64}" in config.json'),
        ("old weights", r'delete "weights_sha256" from config.json'),
        ("old config", r'set "weights_sha256": "[0-9a-f]{64}" in config.json'),
    ],
)
def test_config_and_weights_of_different_saves_are_refused(
    saved: Path, tmp_path: Path, mix: str, fix: str, no_tensor_reads: None
) -> None:
    other = same_layers_other_weights().save_pretrained(tmp_path / "other")
    if mix == "two saves":
        shutil.copy(other / "config.json", saved / "config.json")
    elif mix == "old weights":  # written by an older unetseg, or by hand
        _strip_records(saved, weights=True)
    else:
        shutil.copy(other / "config.json", saved / "config.json")
        _strip_records(saved, config=True)
    with pytest.raises(WeightsError, match=rf"json and model\.safetensors come from differ.*{fix}"):
        UNet.from_pretrained(saved)


def test_models_saved_before_the_digest_load_and_gain_it_when_saved_again(saved: Path) -> None:
    _strip_records(saved, config=True, weights=True)
    model = UNet.from_pretrained(saved)
    assert torch.equal(outputs(model), outputs(trained_tiny()))
    model.save_pretrained(saved)
    assert "weights_sha256" in json.loads((saved / "config.json").read_text())


def test_an_invalid_digest_in_config_is_a_config_error(saved: Path) -> None:
    data = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**data, "weights_sha256": 12}))
    with pytest.raises(ConfigError, match=r"config.json: weights_sha256 must be the 64 hex"):
        UNet.from_pretrained(saved)


def test_save_removes_the_temp_files_of_killed_saves_only(
    saved: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = dead_pid()
    gone = [leftover(saved / name, pid=dead) for name in sorted(FILES)]
    kept = [
        leftover(saved / "model.safetensors", pid=os.getppid()),  # another rank, saving now
        leftover(saved / "config.json", pid=dead, host="0123abcd"),  # another machine's
        leftover(saved / "last.safetensors", pid=dead),  # fit()'s, not save_pretrained()'s
    ]
    (saved / "notes.txt").write_text("the user's")
    with caplog.at_level(logging.INFO, logger="unetseg"):
        trained_tiny().save_pretrained(saved)
    assert not any(p.exists() for p in gone)
    assert {p.name for p in saved.iterdir()} == FILES | {"notes.txt"} | {p.name for p in kept}
    assert "removed 3 temp file(s)" in caplog.text


def test_saved_files_are_readable_by_others(saved: Path) -> None:
    umask = os.umask(0o022)
    try:
        UNet(1, 2, base_channels=4, depth=2).save_pretrained(saved)
    finally:
        os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in saved.iterdir())


def test_failed_first_save_leaves_no_partial_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> str:
        raise RuntimeError("crash while rendering the card")

    monkeypatch.setattr(hub, "render_model_card", fail)
    with pytest.raises(RuntimeError):
        UNet(1, 2, base_channels=4, depth=2).save_pretrained(tmp_path / "new")
    assert not (tmp_path / "new").exists() or not list((tmp_path / "new").iterdir())


# --- fine-tuning ---------------------------------------------------------------------------


def test_fine_tune_keeps_all_but_the_head(saved: Path) -> None:
    old = UNet.from_pretrained(saved)
    new = UNet.from_pretrained(saved, num_classes=5)
    assert new.config.num_classes == 5 and new.head.weight.shape[0] == 5
    assert new.config.class_names is None and new.config.class_colors is None
    assert new.config.mask_values is None and new.config.metrics is None
    assert new.config.image_mean == (0.5,) and new.config.ignore_index == 7
    old_state, new_state = old.state_dict(), new.state_dict()
    kept = [k for k in old_state if not k.startswith("head.")]
    assert all(torch.equal(old_state[k], new_state[k]) for k in kept)
    new.save_pretrained(saved.parent / "tuned")  # and the result is a valid checkpoint
    assert UNet.from_pretrained(saved.parent / "tuned").config.num_classes == 5


def test_fine_tune_drops_ignore_index_that_became_a_class(saved: Path) -> None:
    assert UNet.from_pretrained(saved, num_classes=9).config.ignore_index is None


def test_same_num_classes_is_a_plain_load(saved: Path) -> None:
    model = UNet.from_pretrained(saved, num_classes=3)
    assert model.config.class_names == ("background", "cell", "membrane")


@pytest.mark.parametrize("bad", ["5", True, 2.5, 0, -1])
def test_bad_num_classes(saved: Path, bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"num_classes"):
        UNet.from_pretrained(saved, num_classes=bad)


# --- hostile config.json ----------------------------------------------------------------


NO_CLASSES = {"class_names": None, "mask_values": None, "class_colors": None}


def _edit(folder: Path, **changes: Any) -> None:
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"num_classes": "3"}, "num_classes must be an integer"),
        ({"num_classes": True}, "num_classes must be an integer"),
        ({"num_classes": 2.5}, "num_classes must be an integer"),
        ({"num_classes": 0}, "num_classes must be in"),
        ({"depth": -1}, "depth must be in"),
        ({"base_channels": 1e9}, "base_channels must be an integer"),
        ({"base_channels": 4096, "depth": 8}, "parameters"),
        ({"norm": "layer"}, "norm must be one of"),
        ({"learning_rate": 0.1}, "unknown key"),
        ({"format_version": 99}, "newer"),
        ({"class_names": ["a", "b"]}, "class_names has 2 entries"),
    ],
)
def test_invalid_config_is_refused_before_building(
    saved: Path, changes: dict[str, Any], words: str, no_tensor_reads: None
) -> None:
    _edit(saved, **changes)
    with pytest.raises(ConfigError, match=words) as err:
        UNet.from_pretrained(saved)
    assert str(saved / "config.json") in str(err.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"num_classes": 2, "num_classes": 3}', "duplicate"),
        (b'{"dropout": NaN}', "NaN is not valid JSON"),
        (b" " * (2**20 + 1), "too large"),
        (b"[" * 200_000 + b"]" * 200_000, "not valid JSON"),  # RecursionError in json
    ],
)
def test_unparsable_config_is_refused(
    saved: Path, text: bytes, words: str, no_tensor_reads: None
) -> None:
    (saved / "config.json").write_bytes(text)
    with pytest.raises(ConfigError, match=words) as err:
        UNet.from_pretrained(saved)
    assert "config.json" in str(err.value)


def test_missing_config_is_refused(saved: Path, no_tensor_reads: None) -> None:
    (saved / "config.json").unlink()
    with pytest.raises(WeightsError, match=r"config.json is missing"):
        UNet.from_pretrained(saved)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            NO_CLASSES | {"num_classes": 4},
            r"head.weight: shape \[3, 4, 1, 1\] in the file, \[4, 4, 1, 1\]",
        ),
        ({"base_channels": 8}, "stem.0.weight: shape"),
        ({"in_channels": 3, "image_mean": None, "image_std": None}, "stem.0.weight"),
        ({"norm": "none"}, "not in the model: .*running_mean"),
        ({"depth": 3}, "missing from the file: .*down.2"),
    ],
)
def test_config_disagreeing_with_weights_is_refused(
    saved: Path, changes: dict[str, Any], words: str, no_tensor_reads: None
) -> None:
    _edit(saved, **changes)
    with pytest.raises(WeightsError, match=words) as err:
        UNet.from_pretrained(saved)
    assert "config.json" in str(err.value) and "model.safetensors" in str(err.value)


# --- hostile weights ---------------------------------------------------------------------


def _rewrite_weights(folder: Path, edit: Any) -> None:
    """Edit the tensors, keeping the metadata (and so the tie to config.json)."""
    path = folder / "model.safetensors"
    with safe_open(path, "pt") as handle:
        metadata = handle.metadata()
    save_file(edit(load_file(path)), path, metadata=metadata)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth"])
def test_only_pickle_weights_are_refused(saved: Path, name: str) -> None:
    marker = saved / "pwned"
    torch.save({"w": Payload(marker)}, saved / name)
    (saved / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match=f"only pickle weights \\({name}\\).*save_pretrained"):
        UNet.from_pretrained(saved)
    assert not marker.exists()


def test_pickle_renamed_safetensors_never_runs(saved: Path, no_tensor_reads: None) -> None:
    marker = saved.parent / "pwned"
    (saved / "model.safetensors").write_bytes(pickle.dumps({"w": Payload(marker)}))
    with pytest.raises(WeightsError, match=r"pickle"):
        UNet.from_pretrained(saved)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 7, 100, -1])
def test_truncated_weights_are_refused(saved: Path, cut: int, no_tensor_reads: None) -> None:
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(WeightsError, match=r"model.safetensors"):
        UNet.from_pretrained(saved)


def test_absurd_header_is_refused(saved: Path, no_tensor_reads: None) -> None:
    (saved / "model.safetensors").write_bytes((2**40).to_bytes(8, "little") + b"{}")
    with pytest.raises(WeightsError, match=f"limit {MAX_HEADER_BYTES:,}"):
        UNet.from_pretrained(saved)


def test_out_of_bounds_offsets_are_refused(saved: Path, no_tensor_reads: None) -> None:
    path = saved / "model.safetensors"
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    header["head.bias"]["data_offsets"][1] += 10**9
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size :])
    with pytest.raises(WeightsError, match=r"head.bias.*outside"):
        UNet.from_pretrained(saved)


def test_wrong_dtype_is_listed(saved: Path, no_tensor_reads: None) -> None:
    _rewrite_weights(
        saved, lambda t: {k: v.double() if k.startswith("head") else v for k, v in t.items()}
    )
    with pytest.raises(WeightsError, match=r"head.bias: dtype F64 in the file, F32 in the model"):
        UNet.from_pretrained(saved)


def test_missing_and_unexpected_keys_are_listed(saved: Path, no_tensor_reads: None) -> None:
    def edit(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t["extra.weight"] = t.pop("head.bias")
        return t

    _rewrite_weights(saved, edit)
    with pytest.raises(
        WeightsError, match=r"missing from the file: head.bias; not in the model: extra.weight"
    ):
        UNet.from_pretrained(saved)


def test_ddp_prefix_gets_a_hint(saved: Path, no_tensor_reads: None) -> None:
    _rewrite_weights(saved, lambda t: {f"module.{k}": v for k, v in t.items()})
    with pytest.raises(WeightsError, match=r"DistributedDataParallel.*model.module"):
        UNet.from_pretrained(saved)


def test_lenient_load_is_opt_in_and_logged(saved: Path, caplog: pytest.LogCaptureFixture) -> None:
    _rewrite_weights(saved, lambda t: {k: v for k, v in t.items() if k != "head.bias"})
    with caplog.at_level(logging.WARNING, logger="unetseg"):
        model = UNet.from_pretrained(saved, strict=False)
    assert "head.bias" in caplog.text
    assert torch.equal(model.head.bias, torch.zeros(3))


def test_nonfinite_weights_are_refused_by_default(saved: Path) -> None:
    def poison(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t["head.weight"][0, 0, 0, 0] = float("nan")
        return t

    _rewrite_weights(saved, poison)
    with pytest.raises(WeightsError, match=r"NaN.*head.weight"):
        UNet.from_pretrained(saved)
    model = UNet.from_pretrained(saved, allow_nonfinite=True)
    assert torch.isnan(model.head.weight).any()


def test_empty_or_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match=r"no model.safetensors.*save_pretrained"):
        UNet.from_pretrained(tmp_path / "empty")
    with pytest.raises(WeightsError, match=r"no such folder"):
        UNet.from_pretrained(tmp_path / "absent")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match=r"no such folder"):
        UNet.from_pretrained("./absent")


@pytest.mark.parametrize("device", ["nope", "cuda:99"])
def test_unusable_map_location_is_a_weights_error(saved: Path, device: str) -> None:
    with pytest.raises(WeightsError, match=f"device '{device}'"):
        UNet.from_pretrained(saved, map_location=device)


def test_passing_the_weights_file_says_pass_the_folder(saved: Path) -> None:
    with pytest.raises(WeightsError, match=r"pass the folder"):
        UNet.from_pretrained(saved / "model.safetensors")


# --- the Hub, offline, through huggingface_hub's real cache ----------------------------


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Lay out ``folder``'s files as huggingface_hub's cache would after a download."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for file in folder.iterdir():
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", blob.name))
    return snapshot


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import; set both the variable and the constant.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # no local folder "org/name" may shadow the repo id


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The file names requested from huggingface_hub."""
    names: list[str] = []
    real = _locate.hf_hub_download

    def spy(repo_id: str, filename: str, **kwargs: Any) -> str:
        names.append(filename)
        return real(repo_id, filename, **kwargs)

    monkeypatch.setattr(_locate, "hf_hub_download", spy)
    return names


def test_repo_id_loads_from_cache_offline(
    saved: Path, tmp_path: Path, offline: None, downloads: list[str]
) -> None:
    cache = tmp_path / "hf-cache"
    fill_cache(cache, "org/name", saved)
    model = UNet.from_pretrained("org/name", cache_dir=cache)
    assert torch.equal(outputs(model), outputs(UNet.from_pretrained(saved)))
    assert model.config.class_names == ("background", "cell", "membrane")
    assert downloads == ["config.json", "model.safetensors"]  # never a .bin
    pinned = UNet.from_pretrained("org/name", cache_dir=cache, revision=COMMIT)
    assert torch.equal(outputs(pinned), outputs(model))


def test_default_cache_location_is_used(
    saved: Path, tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hf-cache"
    fill_cache(cache, "org/name", saved)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert UNet.from_pretrained("org/name").config.num_classes == 3


def test_env_variable_alone_means_offline(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloads: list[str]
) -> None:
    # Set after import: huggingface_hub's constant stays False, unetseg still honours it.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError, match=r"offline mode is on"):
        UNet.from_pretrained("org/name", cache_dir=tmp_path / "cold")


def test_local_files_only_loads_from_cache(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "hf-cache"
    fill_cache(cache, "org/name", saved)
    model = UNet.from_pretrained("org/name", cache_dir=cache, local_files_only=True)
    assert model.config.num_classes == 3


def test_a_hub_snapshot_mixing_two_saves_is_refused(
    saved: Path, tmp_path: Path, offline: None
) -> None:
    other = same_layers_other_weights().save_pretrained(tmp_path / "other")
    shutil.copy(other / "config.json", saved / "config.json")
    cache = tmp_path / "hf-cache"
    fill_cache(cache, "org/name", saved)
    with pytest.raises(WeightsError, match=r"different saves.*revision="):
        UNet.from_pretrained("org/name", cache_dir=cache)


def test_cold_cache_names_repo_and_fix(tmp_path: Path, offline: None) -> None:
    with pytest.raises(WeightsError) as err:
        UNet.from_pretrained("org/name", cache_dir=tmp_path / "cold")
    message = str(err.value)
    assert "'org/name'" in message and "offline" in message
    assert "hf download org/name" in message and str(tmp_path / "cold") in message


def test_unknown_revision_in_cache(saved: Path, tmp_path: Path, offline: None) -> None:
    fill_cache(tmp_path / "c", "org/name", saved)
    with pytest.raises(WeightsError, match=r"revision 'v2'"):
        UNet.from_pretrained("org/name", cache_dir=tmp_path / "c", revision="v2")


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_a_file_the_cache_knows_the_repo_lacks_is_named_offline(
    saved: Path, tmp_path: Path, offline: None, missing: str
) -> None:
    # huggingface_hub marks files an earlier download found missing (.no_exist): "fetch it
    # once with network access" would not help, the repo is not a unetseg checkpoint.
    (saved / missing).unlink()
    snapshot = fill_cache(tmp_path / "c", "org/name", saved)
    marker = snapshot.parents[1] / ".no_exist" / COMMIT / missing
    marker.parent.mkdir(parents=True)
    marker.touch()
    with pytest.raises(WeightsError, match=rf"Hub repo 'org/name' has no {missing}") as err:
        UNet.from_pretrained("org/name", cache_dir=tmp_path / "c")
    assert "network" not in str(err.value)


def test_revision_with_a_local_folder_is_refused(saved: Path) -> None:
    # A folder named like the repo would load instead of the pinned revision, silently.
    with pytest.raises(WeightsError, match=r"local folder.*revision='v1'"):
        UNet.from_pretrained(saved, revision="v1")


def test_cached_pickle_is_refused(saved: Path, tmp_path: Path, offline: None) -> None:
    marker = tmp_path / "pwned"
    (saved / "model.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    fill_cache(tmp_path / "c", "org/name", saved)
    with pytest.raises(WeightsError, match=r"never unpickles"):
        UNet.from_pretrained("org/name", cache_dir=tmp_path / "c")
    assert not marker.exists()


def test_invalid_repo_id(offline: None) -> None:
    with pytest.raises(WeightsError, match=r"neither an existing folder nor a valid Hub repo id"):
        UNet.from_pretrained("bad repo id!")


# --- push_to_hub, up to the upload ------------------------------------------------------


def test_push_to_hub_uploads_only_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, Any] = {}
    uploaded = tmp_path / "uploaded"

    def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> RepoUrl:
        calls["create"] = (repo_id, kwargs, self.token)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self: HfApi, **kwargs: Any) -> Any:
        calls["upload"] = kwargs
        shutil.copytree(kwargs["folder_path"], uploaded)
        return types.SimpleNamespace(commit_url="https://hf.co/org/name/commit/1", pr_url=None)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    model = trained_tiny()
    url = model.push_to_hub(
        "org/name",
        private=True,
        token="hf_x",
        commit_message="v1",
        license="mit",
        datasets=["org/cells"],
    )
    assert url == "https://hf.co/org/name/commit/1"
    repo_id, kwargs, token = calls["create"]
    assert repo_id == "org/name" and kwargs["private"] is True and kwargs["exist_ok"] is True
    assert token == "hf_x"
    assert calls["upload"]["repo_id"] == "org/name" and calls["upload"]["commit_message"] == "v1"
    assert not Path(calls["upload"]["folder_path"]).exists()  # the temp folder is cleaned up

    assert {p.name for p in uploaded.iterdir()} == FILES
    for file in uploaded.iterdir():  # nothing pickled, whatever its name
        assert file.read_bytes()[:1] != b"\x80" and file.read_bytes()[:2] != b"PK"
    card = (uploaded / "README.md").read_text()
    assert "library_name: unetseg" in card and "license: mit" in card
    assert 'UNet.from_pretrained("org/name")' in card and "| 2 | membrane | 255 |" in card
    loaded = UNet.from_pretrained(uploaded)
    assert torch.equal(outputs(loaded), outputs(model))


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Mocked Hub for user "alice": the calls made, and the uploaded folder's copy."""
    calls: dict[str, Any] = {"uploaded": tmp_path / "uploaded"}

    def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> RepoUrl:
        calls["create"] = repo_id, kwargs
        return RepoUrl(
            "https://huggingface.co/" + (repo_id if "/" in repo_id else f"alice/{repo_id}")
        )

    def upload_folder(self: HfApi, **kwargs: Any) -> Any:
        calls["upload"] = kwargs
        shutil.copytree(kwargs["folder_path"], calls["uploaded"])
        pr = "https://hf.co/alice/name/discussions/1" if kwargs["create_pr"] else None
        return types.SimpleNamespace(commit_url="https://hf.co/alice/name/commit/1", pr_url=pr)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_push_to_a_bare_name_uses_the_hubs_full_id(hub_calls: dict[str, Any]) -> None:
    url = trained_tiny().push_to_hub("name", revision="dev", create_pr=True)
    assert url == "https://hf.co/alice/name/discussions/1"
    upload = hub_calls["upload"]
    assert upload["repo_id"] == "alice/name"
    assert upload["revision"] == "dev" and upload["create_pr"] is True
    card = (hub_calls["uploaded"] / "README.md").read_text()
    assert 'UNet.from_pretrained("alice/name")' in card  # "name" alone would not load


def test_failed_push_is_a_weights_error(
    hub_calls: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_write_access(self: HfApi, **kwargs: Any) -> Any:
        calls["folder"] = Path(kwargs["folder_path"])
        raise huggingface_hub.errors.LocalTokenNotFoundError("Token is required")

    calls: dict[str, Path] = {}
    monkeypatch.setattr(HfApi, "upload_folder", no_write_access)
    with pytest.raises(WeightsError, match=r"cannot push to Hub model repo 'alice/name'.*token"):
        trained_tiny().push_to_hub("alice/name", token="hf_x")
    assert not calls["folder"].exists()  # no temp files left behind

    def invalid(self: HfApi, repo_id: str, **kwargs: Any) -> Any:
        huggingface_hub.utils.validate_repo_id(repo_id)

    monkeypatch.setattr(HfApi, "create_repo", invalid)
    with pytest.raises(WeightsError, match=r"'bad id!'"):
        trained_tiny().push_to_hub("bad id!")


def test_a_model_that_cannot_be_saved_creates_no_repo(hub_calls: dict[str, Any]) -> None:
    # Half weights are refused by save_pretrained; the repo must not be created first.
    with pytest.raises(WeightsError, match=r"model\.float\(\)"):
        trained_tiny().half().push_to_hub("alice/name")
    with pytest.raises(ConfigError, match="tags"):
        trained_tiny().push_to_hub("alice/name", tags="em")
    assert "create" not in hub_calls and "upload" not in hub_calls
