import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetseg import UNet
from unetseg.export import ExportError, export_onnx

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[UNet, Path]:
    torch.manual_seed(0)
    model = UNet(3, 4, base_channels=8, depth=3, class_names=["a", "b", "c", "d"]).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, path)
    return model, path


@pytest.mark.parametrize("size", [(37, 61), (1, 1), (64, 64), (130, 97)])
def test_onnx_runtime_matches_pytorch_on_any_size(
    exported: tuple[UNet, Path], size: tuple[int, int]
) -> None:
    model, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, *size)
    (logits,) = session.run(["logits"], {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_onnx_file_carries_the_config(exported: tuple[UNet, Path]) -> None:
    model, path = exported
    graph = onnx.load(str(path))
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["unetseg_config"]) == model.config.to_dict()


def test_export_leaves_model_mode_and_a_failed_export_leaves_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = UNet(1, 2, base_channels=4, depth=2).train()
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportError, match="exporter exploded"):
        export_onnx(model, path)
    assert path.read_bytes() == b"old"
    assert model.training


def test_export_leaves_a_half_precision_model_in_half_precision(tmp_path: Path) -> None:
    model = UNet(1, 2, base_channels=4, depth=2).to(torch.bfloat16)
    export_onnx(model, tmp_path / "m.onnx")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
