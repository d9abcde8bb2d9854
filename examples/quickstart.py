"""Quickstart: build a U-Net and run it on images of awkward sizes.

Run with no arguments: ``python examples/quickstart.py``. This grows into the full
workflow (data -> fit -> save -> segment -> pictures) as the library lands.
"""

from __future__ import annotations

import torch

import unetseg


def main() -> None:
    torch.manual_seed(0)
    model = unetseg.UNet(in_channels=3, num_classes=2, base_channels=16, depth=4).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"unetseg {unetseg.__version__}: UNet with {params / 1e6:.2f}M parameters")
    for height, width in [(1, 1), (97, 131), (360, 480)]:
        with torch.no_grad():
            logits = model(torch.rand(1, 3, height, width))
        print(f"input {height}x{width} -> logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
