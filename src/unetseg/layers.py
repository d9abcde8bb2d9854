"""Building blocks of the U-Net, resolved from the config's strings.

Layers are looked up by name (``norm="batch"``, ``activation="relu"``) so that the
config stays JSON and a checkpoint can rebuild exactly the network it was saved from.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ConvBlock",
    "DownBlock",
    "ResidualBlock",
    "UpBlock",
    "make_activation",
    "make_block",
    "make_norm",
]

GROUPS = 8  # GroupNorm groups; UNetConfig checks that widths divide by it


def make_norm(name: str, channels: int) -> nn.Module:
    """Normalisation layer for ``channels`` feature maps, by config name."""
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        return nn.GroupNorm(GROUPS, channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}")  # UNetConfig validates before we get here


def make_activation(name: str) -> nn.Module:
    """Activation layer by config name."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01, inplace=True)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class ConvBlock(nn.Sequential):
    """Two padded 3x3 convolutions, each followed by normalisation and activation.

    Convolutions carry no bias when a normalisation follows: its shift makes one redundant.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: str, activation: str):
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            make_activation(activation),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            make_activation(activation),
        )


class ResidualBlock(nn.Module):
    """``ConvBlock`` with a shortcut: act(conv-norm-act-conv-norm(x) + proj(x)).

    The projection is a 1x1 conv (and norm) when the width changes, else the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: str, activation: str):
        super().__init__()
        bias = norm == "none"
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            make_activation(activation),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=bias), make_norm(norm, out_channels)
            )
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.body(x) + self.shortcut(x))
        return out


def make_block(
    kind: str, in_channels: int, out_channels: int, *, norm: str, activation: str
) -> nn.Module:
    """The two-conv unit of every level, by config name (``plain`` or ``residual``)."""
    if kind == "plain":
        return ConvBlock(in_channels, out_channels, norm=norm, activation=activation)
    if kind == "residual":
        return ResidualBlock(in_channels, out_channels, norm=norm, activation=activation)
    raise ValueError(f"unknown block {kind!r}")


class DownBlock(nn.Sequential):
    """2x2 max-pool, then a block that doubles (or sets) the width."""

    def __init__(
        self, in_channels: int, out_channels: int, *, block: str, norm: str, activation: str
    ):
        super().__init__(
            nn.MaxPool2d(2),
            make_block(block, in_channels, out_channels, norm=norm, activation=activation),
        )


class UpBlock(nn.Module):
    """Upsample 2x, concatenate the skip connection, then a block.

    ``transpose`` learns the upsampling (the paper's "up-convolution"); ``bilinear``
    interpolates and uses a 1x1 conv to halve the width, which is cheaper and avoids
    checkerboard artefacts.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        upsample: str,
        block: str,
        norm: str,
        activation: str,
    ):
        super().__init__()
        self.up: nn.Module
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, kernel_size=1),
            )
        self.conv = make_block(
            block, 2 * out_channels, out_channels, norm=norm, activation=activation
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # x: (N, in, h, w), skip: (N, out, 2h, 2w) -> (N, out, 2h, 2w)
        out: torch.Tensor = self.conv(torch.cat([skip, self.up(x)], dim=1))
        return out
