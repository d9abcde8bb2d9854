"""File-writing helpers shared by the data, pairing, mask and atomic-write tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import unetseg
from unetseg import UNetConfig, _utils
from unetseg.mask_codec import MaskCodec
from unetseg.mask_encoding import build_codec
from unetseg.masks import read_mask, summarize
from unetseg.visualize import mask_image

# The unetseg under test, for child processes: the same code as the parent's.
SRC = Path(unetseg.__file__).resolve().parents[1]


def write(path: Path, array: np.ndarray, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def make_folder(
    root: Path, n: int = 4, size: tuple[int, int] = (12, 16), rgb: bool = True
) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (*size, 3) if rgb else size
        write(root / "images" / f"{i:02d}.jpg", rng.integers(0, 255, shape, dtype=np.uint8))
        mask = np.zeros(size, np.uint8)
        mask[: size[0] // 2] = 255
        write(root / "masks" / f"{i:02d}_mask.png", mask)
    return root / "images", root / "masks"


def codec_for(paths: list[Path], **kwargs: Any) -> MaskCodec:
    return build_codec([summarize(read_mask(p), str(p)) for p in paths], **kwargs)


def save(tmp_path: Path, name: str, array: np.ndarray, **kwargs: Any) -> Path:
    path = tmp_path / name
    Image.fromarray(array).save(path, **kwargs)
    return path


def blocks(values: list[int], shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    """A small mask that uses every value in ``values``."""
    flat = np.resize(np.array(values), shape[0] * shape[1])
    return flat.reshape(shape)


def round_trip(codec: MaskCodec, path: Path) -> tuple[np.ndarray, Image.Image]:
    classes = codec.decode(read_mask(path), str(path))
    config = UNetConfig(
        num_classes=codec.num_classes,
        mask_encoding=codec.encoding,
        mask_values=codec.mask_values,
        class_colors=codec.class_colors,
    )
    return classes, mask_image(classes, config)


def dead_pid() -> int:
    """The pid of a process that has just exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def leftover(
    target: Path, *, pid: int | None = None, host: str | None = None, token: str | None = None
) -> Path:
    """A temp file for ``target`` as an atomic write by that process would have named it.

    By default this process's own name; ``pid``/``host``/``token`` stand in for another
    writer's (``host`` is the 8-hex hash the library writes).
    """
    with pytest.MonkeyPatch.context() as patch:
        if pid is not None:
            patch.setattr(os, "getpid", lambda: pid)
        if host is not None:
            patch.setattr(_utils, "_host", lambda: host)
        if token is not None:
            patch.setattr(_utils, "_PROCESS_TOKEN", token)
        fd, name = _utils._make_temp(target)
    os.write(fd, b"half a checkpoint")
    os.close(fd)
    return Path(name)


def kill_9_when_flagged(script: Path, flag: Path, *args: str, after: float = 0.0) -> None:
    """Run ``script FLAG ARGS...`` and kill -9 it ``after`` seconds once it has written ``flag``.

    The script writes the flag where it wants to die (it then sleeps), so the kill lands at
    a known point instead of after a guessed delay; ``after`` > 0 lets it run on a while.
    """
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, str(script), str(flag), *args], env=env)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert child.poll() is None, "child exited before it could be killed"
            assert time.monotonic() < deadline, "child never reached the point to kill it at"
            time.sleep(0.05)
        time.sleep(after)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL


def write_tiff(path: Path, array: np.ndarray, *, planar: bool = False, alpha: bool = False) -> Path:
    """An uncompressed little-endian TIFF of an (H, W, C) array, as GDAL writes bands.

    Pillow cannot write these (several 16-bit or float bands, or more than four), and the
    tests must not need tifffile to make them. ``alpha`` marks the last band as alpha.
    """
    height, width, samples = array.shape
    kind = {"u": 1, "i": 2, "f": 3}[array.dtype.kind]
    data = (array.transpose(2, 0, 1) if planar else array).astype(array.dtype.newbyteorder("<"))
    pixels = data.tobytes()
    bits = array.dtype.itemsize * 8
    tags: list[tuple[int, int, list[int]]] = [  # (tag, type: 3 SHORT / 4 LONG, values)
        (256, 4, [width]),
        (257, 4, [height]),
        (258, 3, [bits] * samples),
        (259, 3, [1]),
        (262, 3, [2 if samples >= 3 else 1]),
        (273, 4, [0] * (samples if planar else 1)),  # strip offsets, set below
        (277, 3, [samples]),
        (278, 4, [height]),
        (279, 4, [len(pixels) // (samples if planar else 1)] * (samples if planar else 1)),
        (284, 3, [2 if planar else 1]),
        (339, 3, [kind] * samples),
    ]
    extra = samples - (3 if samples >= 3 else 1)
    if extra:
        tags.append((338, 3, [0] * (extra - 1) + [2 if alpha else 0]))
        tags.sort()
    ifd_size = 2 + 12 * len(tags) + 4
    blobs = bytearray()
    entries = bytearray()
    data_start = 8 + ifd_size
    strips = samples if planar else 1
    values_end = data_start + sum(4 * len(v) if t == 4 else 2 * len(v) for _, t, v in tags)
    offsets = [values_end + i * (len(pixels) // strips) for i in range(strips)]
    for tag, kind_, values in tags:
        if tag == 273:
            values = offsets
        packed = np.asarray(values, "<u4" if kind_ == 4 else "<u2").tobytes()
        if len(packed) <= 4:
            entries += (
                np.array([tag, kind_], "<u2").tobytes() + np.array([len(values)], "<u4").tobytes()
            )
            entries += packed.ljust(4, b"\0")
        else:
            where = data_start + len(blobs)
            entries += np.array([tag, kind_], "<u2").tobytes()
            entries += np.array([len(values), where], "<u4").tobytes()
            blobs += packed
    header = b"II" + np.array([42], "<u2").tobytes() + np.array([8], "<u4").tobytes()
    ifd = np.array([len(tags)], "<u2").tobytes() + bytes(entries) + b"\0\0\0\0"
    content = header + ifd + bytes(blobs)
    content = content.ljust(values_end, b"\0") + pixels
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path
