from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from unetseg.errors import InputError
from unetseg.history import History


def _history() -> History:
    h = History(best_epoch=2, best_mean_iou=0.8, restored_best=True, stop_reason="epochs")
    for epoch in (1, 2):
        h.epochs.append(
            {"epoch": float(epoch), "train_loss": 1.0 / epoch, "lr": 1e-3, "seconds": 1.0,
             "images_per_s": 10.0, "val/mean_iou": 0.4 * epoch}
        )  # fmt: skip
    return h


def test_metric_access_and_json_round_trip() -> None:
    h = _history()
    assert h.train_loss == [1.0, 0.5]
    assert h.val_mean_iou == [0.4, 0.8]
    with pytest.raises(InputError, match=r"'val/miou'.*'val/mean_iou'"):  # a typo is no NaN curve
        h.metric("val/miou")
    unvalidated = History(epochs=[{"epoch": 1.0, "train_loss": 1.0}])
    assert math.isnan(unvalidated.val_mean_iou[0])  # no validation data: NaN, as documented
    again = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again == h and len(again) == 2


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = _history().plot(tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert History().plot(tmp_path / "empty.png").exists()  # no epochs, no validation


def test_plot_without_matplotlib_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"unetseg\[plot\]"):
        _history().plot("x.png")


def test_plot_shows_a_single_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    saved: list[Figure] = []
    save = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), save(fig, *a, **k))
    )
    h = _history()
    h.epochs = h.epochs[:1]  # a line through one point draws nothing: each curve needs markers
    h.plot(tmp_path / "one.png")
    lines = [line for ax in saved[0].axes for line in ax.get_lines() if line.get_label() != "best"]
    assert len(lines) == 3 and all(line.get_marker() not in ("None", "", None) for line in lines)
