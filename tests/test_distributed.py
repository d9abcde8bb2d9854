"""fit() under torchrun's environment: 2 CPU processes with gloo, as torchrun would start them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_train import BUILD, SRC
from unetseg import TrainingError, UNet
from unetseg.distributed import DistInfo, all_reduce_sum, broadcast_floats, setup
from unetseg.metrics import confusion_matrix, scores_from_confusion

CHILD = BUILD + textwrap.dedent(
    """
    import json, logging, os, sys
    from pathlib import Path

    from safetensors.torch import save_file

    from unetseg import fit

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO)
    out = Path(sys.argv[1])
    model, data, _ = build()
    val = make_pairs(3, seed=1)  # odd: ranks score 2 and 1 images, no padding
    history = fit(model, data, val, epochs=2, batch_size=2, progress=False, amp="off",
                  checkpoint_dir=out / "ckpt")
    rank = os.environ["RANK"]
    save_file(model.state_dict(), str(out / f"rank{rank}.safetensors"))
    keys = [list(k) for k in data.keys[1:]]  # the first fetch is fit()'s channel check
    (out / f"rank{rank}.json").write_text(json.dumps({"keys": keys, "history": history.to_dict()}))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_single_process_helpers_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup(torch.device("cpu"))
    assert info == DistInfo() and info.is_main and not info.enabled
    t = torch.ones(3)
    assert all_reduce_sum(t, info) is t
    assert broadcast_floats([1.5], info, torch.device("cpu")) == [1.5]


def test_world_size_without_torchrun_is_a_training_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was torch's bare ValueError from deep inside init_process_group.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(TrainingError, match=r"WORLD_SIZE=2 .*MASTER_ADDR.*torchrun"):
        setup(torch.device("cpu"))


def test_two_processes_agree_and_share_each_epoch(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    base_env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": "2",
        "OMP_NUM_THREADS": "1",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)],
            env={**base_env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        errs.append(err)
    # Rank 0 alone logs (rank 1 repeated every epoch line).
    assert "epoch 2: loss" in errs[0] and "epoch" not in errs[1]

    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)

    runs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for epoch in range(2):  # 8 items, 2 ranks: 4 each per epoch, together all 8 once
        seen = [k[0] for run in runs for k in run["keys"][4 * epoch : 4 * epoch + 4]]
        assert sorted(seen) == list(range(8))
    for a, b in zip(runs[0]["history"]["epochs"], runs[1]["history"]["epochs"], strict=True):
        same = [k for k in a if k.startswith("val/") or k in ("train_loss", "lr", "steps")]
        assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.safetensors"]

    # Validation counts summed over ranks equal one process scoring all 3 images.
    torch.manual_seed(0)
    model = UNet(1, 2, base_channels=4, depth=2, dropout=0.2)
    model.load_state_dict(w0)
    model.eval()
    ns: dict[str, object] = {}
    exec(BUILD, ns)
    cm = torch.zeros(2, 2, dtype=torch.int64)
    with torch.no_grad():
        for image, mask in ns["make_pairs"](3, seed=1):  # type: ignore[operator]
            cm += confusion_matrix(model(image[None]).argmax(1)[0], mask, 2)
    assert scores_from_confusion(cm).mean_iou == pytest.approx(
        runs[0]["history"]["best_mean_iou"], abs=1e-12
    )
