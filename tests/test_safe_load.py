"""The safetensors reader refuses hostile files before reading any tensor data."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from unetseg import WeightsError, safe_load
from unetseg.safe_load import check_finite, check_tensors, load_safetensors, read_header


class Payload:
    """Pickles to "create this file": what a hostile checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def raw_file(path: Path, header: Any, data: bytes = b"", header_len: int | None = None) -> Path:
    """A safetensors file written by hand, so that it can lie."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(text) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", size) + text + data)
    return path


def entry(dtype: str = "F32", shape: Any = (2,), offsets: Any = (0, 8)) -> dict[str, Any]:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.fixture
def no_tensor_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if safetensors is ever asked to read tensor data."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tensor data was read before the header was refused")

    monkeypatch.setattr(safe_load, "load_file", refuse)


def test_valid_file_round_trips(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(2, 3), "b": torch.arange(4), "c": torch.zeros(0)}
    save_file(tensors, tmp_path / "w.safetensors", metadata={"format": "pt"})
    header = read_header(tmp_path / "w.safetensors")
    assert header["a"].dtype == "F32" and header["a"].shape == (2, 3)
    assert header["b"].dtype == "I64" and header["c"].shape == (0,)
    loaded = load_safetensors(tmp_path / "w.safetensors", tensors)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty"),
        (b"\x01\x02\x03", "only 3 bytes"),
        (struct.pack("<Q", 2**40) + b"{}", "claims 1,099,511,627,776 bytes"),
        (struct.pack("<Q", 100) + b'{"a": 1}', "claims 100 bytes"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid JSON"),
        (struct.pack("<Q", 3) + b"{x}", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "JSON object"),
        (struct.pack("<Q", 400_000) + b"[" * 200_000 + b"]" * 200_000, "not valid JSON"),
    ],
)
def test_broken_files_are_refused(
    tmp_path: Path, content: bytes, words: str, no_tensor_reads: None
) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=words) as err:
        load_safetensors(path)
    assert str(path) in str(err.value)
    assert "save_pretrained" in str(err.value)  # says how to fix it


def test_truncated_download_is_refused(tmp_path: Path, no_tensor_reads: None) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.randn(64, 64)}, path)
    full = path.read_bytes()
    for cut in (4, 40, len(full) // 2, len(full) - 1):
        path.write_bytes(full[:cut])
        with pytest.raises(WeightsError, match=str(path)):
            load_safetensors(path)


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        (entry(dtype="C64"), "dtype 'C64'"),
        (entry(dtype=7), "dtype 7"),
        (entry(shape=["2"]), "shape"),
        (entry(shape=[True, 2]), "shape"),
        (entry(shape=[2.5]), "shape"),
        (entry(shape=[-2]), "shape"),
        (entry(offsets=[0, 2**40]), "outside"),
        (entry(offsets=[-8, 0]), "outside"),
        (entry(offsets=[0, "8"]), "data_offsets"),
        (entry(offsets=[0]), "data_offsets"),
        (entry(shape=[3]), "needs 12"),
        ({"dtype": "F32", "shape": [2]}, "exactly"),
        ({**entry(), "extra": 1}, "exactly"),
        ([1, 2], "exactly"),
    ],
)
def test_lying_headers_are_refused(
    tmp_path: Path, tensor: Any, words: str, no_tensor_reads: None
) -> None:
    path = raw_file(tmp_path / "w.safetensors", {"t": tensor}, bytes(8))
    with pytest.raises(WeightsError, match=words):
        load_safetensors(path)


@pytest.mark.parametrize(
    ("header", "data_len", "words"),
    [
        ({"a": entry(offsets=[0, 8]), "b": entry(offsets=[4, 12])}, 12, "overlaps"),
        ({"a": entry(offsets=[0, 8]), "b": entry(offsets=[0, 8])}, 8, "overlaps"),
        ({"a": entry(offsets=[4, 12])}, 12, "gap"),
        ({"a": entry(offsets=[0, 8])}, 16, "8 bytes after the last tensor"),
    ],
)
def test_offsets_must_tile_the_data(
    tmp_path: Path, header: dict[str, Any], data_len: int, words: str, no_tensor_reads: None
) -> None:
    path = raw_file(tmp_path / "w.safetensors", header, bytes(data_len))
    with pytest.raises(WeightsError, match=words):
        read_header(path)


def test_header_size_limit(tmp_path: Path, no_tensor_reads: None) -> None:
    big = b"{}" + b" " * (safe_load.MAX_HEADER_BYTES + 1)
    path = raw_file(tmp_path / "w.safetensors", big)
    with pytest.raises(WeightsError, match="limit"):
        read_header(path)


def test_payload_really_runs_when_unpickled(tmp_path: Path) -> None:
    # Guards the tests below: the payload is live, so "no marker" means "never unpickled".
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_renamed_safetensors_never_runs(
    tmp_path: Path, writer: str, no_tensor_reads: None
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    payload = {"weight": Payload(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    with pytest.raises(WeightsError, match="never unpickles") as err:
        load_safetensors(path)
    assert not marker.exists()
    assert "weights_only=True" in str(err.value)


def test_check_tensors_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file(
        {"a": torch.zeros(2, 3), "b": torch.zeros(4, dtype=torch.float64), "x": torch.ones(1)}, path
    )
    expected = {"a": torch.zeros(3, 2), "b": torch.zeros(4), "c": torch.zeros(1)}
    with pytest.raises(WeightsError) as err:
        check_tensors(path, read_header(path), expected)
    message = str(err.value)
    assert "missing from the file: c" in message
    assert "not in the model: x" in message
    assert "a: shape [2, 3] in the file, [3, 2] in the model" in message
    assert "b: dtype F64 in the file, F32 in the model" in message
    # Lenient mode still refuses shape and dtype disagreements, not missing names.
    with pytest.raises(WeightsError) as err:
        check_tensors(path, read_header(path), expected, strict=False)
    assert "missing" not in str(err.value) and "shape" in str(err.value)


@pytest.mark.parametrize(
    ("prefix", "origin"), [("module.", "DataParallel"), ("_orig_mod.", "compile")]
)
def test_wrapper_prefix_hint(tmp_path: Path, prefix: str, origin: str) -> None:
    path = tmp_path / "w.safetensors"
    save_file({f"{prefix}a": torch.zeros(2), f"{prefix}b": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match=origin) as err:
        check_tensors(path, read_header(path), {"a": torch.zeros(2), "b": torch.zeros(2)})
    assert repr(prefix) in str(err.value)


def test_expected_shapes_may_live_on_the_meta_device(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(2, 3)}, path)
    check_tensors(path, read_header(path), {"a": torch.empty(2, 3, device="meta")})


def test_nonfinite_values_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    bad = torch.tensor([1.0, float("nan"), float("inf"), -float("inf")])
    save_file({"w": bad, "n": torch.arange(3)}, path)
    with pytest.raises(WeightsError, match=r"w \(3\).*allow_nonfinite=True"):
        load_safetensors(path)
    loaded = load_safetensors(path, allow_nonfinite=True)
    assert torch.equal(loaded["w"].isnan(), bad.isnan())
    check_finite(path, {"n": torch.arange(3)})  # integers are never "non-finite"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="cannot read"):
        read_header(tmp_path / "absent.safetensors")
