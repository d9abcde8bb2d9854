from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from helpers import dead_pid, leftover
from unetseg import CheckpointError
from unetseg import checkpoint as ckpt


def _sample() -> ckpt.Checkpoint:
    tensors = {"model.w": torch.arange(6.0).reshape(2, 3), "rng.torch": torch.get_rng_state()}
    return ckpt.Checkpoint(tensors=tensors, state={"step": 3, "history": {"epochs": [1.5]}})


def test_round_trip(tmp_path: Path) -> None:
    path = ckpt.write_checkpoint(tmp_path / "last.safetensors", _sample())
    back = ckpt.read_checkpoint(path)
    assert back.state == {"step": 3, "history": {"epochs": [1.5]}}
    assert torch.equal(back.tensors["model.w"], _sample().tensors["model.w"])
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "state", "garbage", "empty", "pickle"])
def test_damaged_files_are_refused(tmp_path: Path, damage: str) -> None:
    path = ckpt.write_checkpoint(tmp_path / "last.safetensors", _sample())
    blob = bytearray(path.read_bytes())
    if damage == "state":  # still valid JSON: "step": 3 becomes 7 (was loaded silently)
        at = blob.index(b"step") + blob[blob.index(b"step") :].index(b"3")
        blob[at] = ord("7")
    elif damage == "truncate":
        blob = blob[: len(blob) - 10]
    elif damage == "flip":
        blob[-3] ^= 0xFF
    elif damage == "garbage":
        blob = bytearray(b"\xff" * 64)
    elif damage == "empty":
        blob = bytearray()
    else:
        blob = bytearray(b"\x80\x04\x95" + b"\x00" * 40)  # a pickle header
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"last\.safetensors"):
        ckpt.read_checkpoint(path)
    with pytest.raises(CheckpointError):
        ckpt.find_latest(tmp_path)


def test_a_checkpoint_of_another_format_version_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ckpt, "FORMAT", "unetseg-train-checkpoint/1")
    path = ckpt.write_checkpoint(tmp_path / "last.safetensors", _sample())
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"another unetseg version .*checkpoint/1"):
        ckpt.read_checkpoint(path)


def test_find_latest_picks_the_most_advanced(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        ckpt.find_latest(tmp_path)
    ckpt.write_checkpoint(tmp_path / "last.safetensors", _sample())
    later = _sample()
    later.state["step"] = 7
    ckpt.write_checkpoint(tmp_path / "interrupted.safetensors", later)
    assert ckpt.find_latest(tmp_path).state["step"] == 7


def test_a_failed_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ckpt.write_checkpoint(tmp_path / "last.safetensors", _sample())
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", boom)
    newer = _sample()
    newer.state["step"] = 99
    # fit() let the raw OSError out, after an epoch of training, naming no file.
    with pytest.raises(CheckpointError, match=r"last\.safetensors: cannot write .*No space left"):
        ckpt.write_checkpoint(path, newer)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_optimizer_state_survives_without_pickle() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        opt.step()
    tensors, json_state = ckpt.optimizer_state_to_flat(opt.state_dict())
    tensors = {k: v.clone() for k, v in tensors.items()}  # as if read back from a file
    clone = torch.nn.Linear(4, 2)
    clone.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(clone.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt.optimizer_state_from_flat(tensors, json_state))
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    assert torch.equal(model.weight, clone.weight)


def test_remove_leftovers_takes_only_checkpoint_temps_of_gone_writers(tmp_path: Path) -> None:
    dead = dead_pid()
    gone = [leftover(tmp_path / f"{name}.safetensors", pid=dead) for name in ckpt.CHECKPOINT_NAMES]
    gone.append(leftover(tmp_path / "last.safetensors", host="0123abcd"))  # the run's old node
    kept = [
        leftover(tmp_path / "last.safetensors", pid=os.getppid()),  # a live writer here
        leftover(tmp_path / "model.safetensors", pid=dead),  # save_pretrained's, not fit()'s
    ]
    ckpt.write_checkpoint(tmp_path / "last.safetensors", _sample())
    assert sorted(ckpt.remove_leftovers(tmp_path)) == sorted(p.name for p in gone)
    assert sorted(tmp_path.iterdir()) == sorted([*kept, tmp_path / "last.safetensors"])
    assert ckpt.read_checkpoint(tmp_path / "last.safetensors").state["step"] == 3
