"""Draw the pictures of the data-formats page: each mask encoding, read by unetseg itself.

Run from the repository root (it rewrites ``docs/images/encoding-*.png``)::

    python docs/make_figures.py

For every encoding it writes one mask file the way users store them, reads it back with
``SegmentationDataset`` and paints what unetseg decoded with ``colorize``: three panels,
"image", "mask file as a viewer shows it" and "classes unetseg reads". Seeded, so the
PNGs only change when the library's reading changes.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import unetseg
from unetseg.visualize import default_palette

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from shapes import CLASS_COLORS, scenes, to_color_mask  # noqa: E402

OUT = ROOT / "docs" / "images"
SIZE = 96  # side of one panel in pixels
IGNORED = np.array([128, 128, 128], np.uint8)  # how ignored pixels are painted


def _palette_png(labels: np.ndarray, path: Path) -> None:
    image = Image.fromarray(labels.astype(np.uint8), mode="L").convert("P")
    palette = default_palette(256)
    palette[1:3] = [(255, 200, 0), (0, 90, 255)]
    image.putpalette(palette.ravel().tolist())
    image.save(path)


def _void_band(labels: np.ndarray, width: int = 3) -> np.ndarray:
    """Labels with a band of 255 ("void") around every shape's outline."""
    edge = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        diff = np.diff(labels.astype(np.int16), axis=axis) != 0
        pad = [(0, 0), (0, 0)]
        pad[axis] = (0, 1)
        edge |= np.pad(diff, pad)
        pad[axis] = (1, 0)
        edge |= np.pad(diff, pad)
    band = edge.copy()
    for _ in range(width - 1):
        grown = band.copy()
        grown[1:] |= band[:-1]
        grown[:-1] |= band[1:]
        grown[:, 1:] |= band[:, :-1]
        grown[:, :-1] |= band[:, 1:]
        band = grown
    out = labels.copy()
    out[band] = 255
    return out


# name -> (write the mask file for these labels, SegmentationDataset keyword arguments)
Writer = Callable[[np.ndarray, Path], Path]
ENCODINGS: dict[str, tuple[Writer, dict[str, object]]] = {
    "index": (
        lambda t, p: _save(Image.fromarray(t), p.with_suffix(".png")),
        {},
    ),
    "binary": (
        lambda t, p: _save(Image.fromarray(np.where(t > 0, 255, 0).astype(np.uint8)), p),
        {},
    ),
    "grey": (
        lambda t, p: _save(Image.fromarray(np.array([0, 100, 200], np.uint8)[t]), p),
        {},
    ),
    "palette": (lambda t, p: (_palette_png(t, p), p)[1], {}),
    "color": (
        lambda t, p: _save(Image.fromarray(to_color_mask(t)), p),
        {"color_map": list(CLASS_COLORS)},
    ),
    "16bit": (
        lambda t, p: _save(Image.fromarray(np.array([0, 1000, 2000], np.uint16)[t]), p),
        {},
    ),
    "numpy": (
        lambda t, p: (np.save(p.with_suffix(".npy"), t.astype(np.int64)), p.with_suffix(".npy"))[1],
        {},
    ),
    "ignore": (
        lambda t, p: _save(Image.fromarray(_void_band(t)), p),
        {"ignore_index": 255},
    ),
}


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def _as_viewer_shows(path: Path) -> np.ndarray:
    """How an image viewer shows the file (16-bit scaled to 8 bits, .npy as grey values)."""
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        return np.repeat(np.clip(array, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    with Image.open(path) as image:
        if image.mode.startswith("I"):
            array = np.asarray(image).astype(np.float64)
            return np.repeat((array / 65535 * 255).astype(np.uint8)[..., None], 3, axis=2)
        return np.asarray(image.convert("RGB"))


def figure(name: str, image: np.ndarray, labels: np.ndarray, folder: Path) -> Path:
    write, kwargs = ENCODINGS[name]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / "0.png")
    mask_path = write(labels, folder / "masks" / "0.png")
    data = unetseg.SegmentationDataset(
        [folder / "images" / "0.png"], [mask_path], augment=False, **kwargs
    )
    config = unetseg.UNetConfig(**{**data.config_fields(), "in_channels": 3})
    classes = data[0][1].numpy()
    ignored = classes == data.ignore_index if data.ignore_index is not None else None
    painted = unetseg.colorize(
        np.where(ignored, 0, classes) if ignored is not None else classes, config
    )
    if ignored is not None:
        painted[ignored] = IGNORED
    panels = [image, _as_viewer_shows(mask_path), painted]
    captions = ["image", f"mask file ({mask_path.suffix[1:]})", f"read: {data.num_classes} classes"]
    canvas = Image.new("RGB", (3 * SIZE + 2 * 4, SIZE + 14), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, caption) in enumerate(zip(panels, captions, strict=True)):
        canvas.paste(Image.fromarray(panel), (i * (SIZE + 4), 14))
        draw.text((i * (SIZE + 4) + 2, 1), caption, fill="black")
    out = OUT / f"encoding-{name}.png"
    canvas.save(out, optimize=True)
    print(f"{out.relative_to(ROOT)}: {data.config_fields()['mask_encoding']}, {data.class_names}")
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    images, labels = scenes(1, seed=3, height=SIZE, width=SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ENCODINGS:
            figure(name, images[0], labels[0], Path(tmp) / name)


if __name__ == "__main__":
    main()
