import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import SRC, dead_pid, leftover
from unetseg._utils import atomic_write, remove_leftover_temps


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.bin"
    with atomic_write(path) as handle:
        handle.write(b"first")
    with atomic_write(path) as handle:
        handle.write(b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as handle:
        handle.write("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_atomic_write_uses_umask_permissions_not_private_ones(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    with atomic_write(path, "w") as handle:
        handle.write("{}")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_leftover_temps_of_gone_writers_are_removed_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "last.safetensors"
    gone = [
        leftover(target, pid=dead_pid()),  # killed mid-write
        leftover(target, token="0badc0de"),  # an earlier process with our pid (restarted)
    ]
    running = [
        leftover(target),  # this process: a write in progress
        leftover(target, pid=os.getppid()),  # another live process: a rank saving right now
    ]
    elsewhere = leftover(target, pid=dead_pid(), host="0123abcd")  # cannot be probed
    with caplog.at_level(logging.INFO, logger="unetseg"):
        removed = remove_leftover_temps(tmp_path, ["last.safetensors"], keep_unknown=True)
    assert sorted(removed) == sorted(p.name for p in gone)
    assert not any(p.exists() for p in gone) and all(p.exists() for p in [*running, elsewhere])
    assert "removed 2 temp file(s)" in caplog.text and gone[0].name in caplog.text
    assert remove_leftover_temps(tmp_path, [target.name], keep_unknown=False) == [elsewhere.name]


def test_only_the_librarys_own_temp_names_for_the_given_targets_are_removed(
    tmp_path: Path,
) -> None:
    target = tmp_path / "last.safetensors"
    users = [
        tmp_path / name
        for name in (
            "last.safetensors",
            "notes.txt",
            ".last.safetensors.abcd1234.tmp",  # another tool's, or an older unetseg's
            ".last.safetensors.unetseg-tmp",
            "last.safetensors.0123abcd-1-00000000.abcdefgh.unetseg-tmp",  # no leading dot
        )
    ]
    for path in users:
        path.write_text("the user's")
    other_target = leftover(tmp_path / "best.safetensors", pid=dead_pid())
    as_folder = leftover(tmp_path / "last.safetensors", pid=dead_pid())
    as_folder.unlink()
    as_folder.mkdir()
    as_link = leftover(tmp_path / "last.safetensors", pid=dead_pid())
    as_link.unlink()
    as_link.symlink_to(users[1])
    assert remove_leftover_temps(tmp_path, ["last.safetensors"], keep_unknown=False) == []
    assert all(p.exists() for p in [*users, other_target, as_folder, as_link])
    assert remove_leftover_temps(tmp_path / "absent", [target.name], keep_unknown=False) == []


def test_class_argmax_matches_torch_argmax() -> None:
    import torch

    from unetseg._utils import class_argmax

    scores = torch.randn(3, 5, 7, 9)
    assert torch.equal(class_argmax(scores, dim=1), scores.argmax(dim=1))
    assert torch.equal(class_argmax(scores[0], dim=0), scores[0].argmax(dim=0))


def test_bare_cuda_under_torchrun_is_this_ranks_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from unetseg._utils import pick_device

    # A 2-GPU machine, faked: torch would place "cuda" on the current device, cuda:0, for
    # every rank, and NCCL refuses two ranks on one GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert pick_device(torch.device("cuda"), local_rank=0) == torch.device("cuda", 0)
    assert pick_device(None, local_rank=1) == torch.device("cuda", 1)
    assert pick_device("cuda:0", local_rank=1) == torch.device("cuda", 0)  # an index wins
    with pytest.raises(ValueError, match="2 CUDA device"):
        pick_device("cuda", local_rank=2)


def test_warnings_reach_stderr_when_no_logging_is_configured(tmp_path: Path) -> None:
    # A notebook that never called logging.basicConfig must still see a warning (here: NaN
    # weights saved) but no INFO chatter; and setLevel on "unetseg" still silences it.
    script = textwrap.dedent(
        """
        import logging, sys, torch
        from unetseg import UNet
        model = UNet(1, 2, base_channels=4, depth=1)
        torch.nn.init.constant_(model.head.bias, float("nan"))
        if sys.argv[2] == "quiet":
            logging.getLogger("unetseg").setLevel(logging.ERROR)
        model.save_pretrained(sys.argv[1])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    stderr = {}
    for level in ("default", "quiet"):
        command = [sys.executable, "-c", script, str(tmp_path / level), level]
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        stderr[level] = run.stderr
    assert "non-finite" in stderr["default"] and "saved" not in stderr["default"]
    assert stderr["quiet"] == ""
