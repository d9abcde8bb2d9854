"""Synthetic "shapes" scenes for the examples: images whose true labels are known exactly.

Each scene is a noisy, shaded background with a few filled circles (class 1) and squares
(class 2) in random colours, so the class of a pixel depends on the *shape* it belongs to,
not on its colour. Shapes are drawn without antialiasing, so every mask pixel is exactly
one class. Everything comes from one ``numpy.random.Generator``: the same seed gives the
same pictures.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

#: Class names in class-index order.
CLASS_NAMES = ("background", "circle", "square")
#: How the examples draw each class in an RGB colour mask ("#rrggbb", in class order).
CLASS_COLORS = ("#000000", "#e6194b", "#3cb44b")


def scene(
    rng: np.random.Generator, height: int = 128, width: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (H, W, 3) uint8 image and (H, W) uint8 class indices (0, 1, 2)."""
    rows = np.linspace(0.0, 1.0, height)[:, None]
    cols = np.linspace(0.0, 1.0, width)[None, :]
    base = rng.uniform(60, 120, size=3)
    tilt = rng.uniform(-40, 40, size=3)
    shade = base + tilt * (0.6 * rows + 0.4 * cols)[..., None]  # (H, W, 3)
    image = Image.fromarray(np.clip(shade, 0, 255).astype(np.uint8))
    labels = Image.new("L", (width, height), 0)
    draw_image, draw_labels = ImageDraw.Draw(image), ImageDraw.Draw(labels)
    side = min(height, width)
    placed: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(3, 7))):
        cls = int(rng.integers(1, 3))
        radius = float(rng.uniform(0.06, 0.14) * side)
        cy, cx = rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)
        # Shapes don't overlap (a square's corner reaches 1.42 radii): each stays whole.
        if any(math.hypot(cy - y, cx - x) < 1.45 * (radius + r) for y, x, r in placed):
            continue
        placed.append((cy, cx, radius))
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        fill = tuple(int(v) for v in rng.integers(130, 256, size=3))
        if cls == 1:
            draw_image.ellipse(box, fill=fill)
            draw_labels.ellipse(box, fill=cls)
        else:
            draw_image.rectangle(box, fill=fill)
            draw_labels.rectangle(box, fill=cls)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, size=(height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), np.asarray(labels, dtype=np.uint8)


def scenes(
    n: int, seed: int = 0, height: int = 128, width: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes stacked: images (N, H, W, 3) uint8 and labels (N, H, W) uint8."""
    rng = np.random.default_rng(seed)
    pairs = [scene(rng, height, width) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def to_color_mask(labels: np.ndarray, colors: tuple[str, ...] = CLASS_COLORS) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 RGB drawing, one colour per class."""
    table = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colors], np.uint8)
    painted: np.ndarray = table[labels]
    return painted
