"""``UNet``: the encoder-decoder network of Ronneberger et al. (2015), any input size.

``forward`` returns logits at the input's own height and width. Inputs whose sides are not
a multiple of ``2**depth`` are zero-padded on the bottom and right (zero is the mean of a
normalised image) and the logits are cropped back, so "Sizes of tensors must match" never
reaches a user. Argmax, tiling and colour maps live in inference code, not here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import UNetConfig
from .errors import ConfigError, InputError
from .hub import HubMixin
from .layers import DownBlock, UpBlock, make_block

__all__ = ["UNet"]


class UNet(HubMixin, nn.Module):
    """U-Net for semantic segmentation.

    Build it from arguments or from a ``UNetConfig``::

        UNet(in_channels=1, num_classes=2)
        UNet(in_channels=3, num_classes=11, base_channels=32, depth=4, norm="group")
        UNet(config)

    Args:
        config_or_in_channels: a ``UNetConfig``, or the number of input channels
            (default 3).
        num_classes: output classes (binary tasks use 2).
        **kwargs: any other ``UNetConfig`` field (``base_channels``, ``depth``, ``norm``,
            ``upsample``, ``activation``, ``dropout``, ...), keyword only.

    Raises:
        ConfigError: a value of the wrong type or out of range, before any allocation.
    """

    def __init__(
        self,
        config_or_in_channels: UNetConfig | int | None = None,
        num_classes: int | None = None,
        **kwargs: Any,
    ):
        super().__init__()
        if isinstance(config_or_in_channels, UNetConfig):
            if num_classes is not None or kwargs:
                raise ConfigError(
                    "pass either a UNetConfig or keyword arguments, not both; "
                    "use config.replace(...) to change a config"
                )
            config = config_or_in_channels
        else:
            fields = dict(kwargs)
            if config_or_in_channels is not None:
                # Else UNet(4, in_channels=1) would build a 1-channel model without a word.
                if "in_channels" in kwargs:
                    raise ConfigError(
                        f"in_channels given twice: {config_or_in_channels!r} positionally "
                        f"and in_channels={kwargs['in_channels']!r}; pass it once"
                    )
                fields["in_channels"] = config_or_in_channels
            if num_classes is not None:
                fields["num_classes"] = num_classes
            try:
                config = UNetConfig(**fields)
            except TypeError as err:  # an unknown keyword
                raise ConfigError(
                    f"{err}; valid fields: {list(UNetConfig.__dataclass_fields__)}"
                ) from None
        self.config = config

        c = config
        widths = [c.base_channels * 2**level for level in range(c.depth + 1)]
        block = {"block": c.block, "norm": c.norm, "activation": c.activation}
        self.stem = make_block(
            c.block, c.in_channels, widths[0], norm=c.norm, activation=c.activation
        )
        self.down = nn.ModuleList(
            DownBlock(widths[i], widths[i + 1], **block) for i in range(c.depth)
        )
        self.dropout = nn.Dropout2d(c.dropout) if c.dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], upsample=c.upsample, **block)
            for i in reversed(range(c.depth))
        )
        self.head = nn.Conv2d(widths[0], c.num_classes, kernel_size=1)
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation suits the ReLU family; deterministic under torch.manual_seed.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def num_classes(self) -> int:
        """Output classes, ``config.num_classes``."""
        return self.config.num_classes

    @property
    def in_channels(self) -> int:
        """Input channels, ``config.in_channels``."""
        return self.config.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits.

        Args:
            x: (N, in_channels, H, W) float images, any H, W >= 1.

        Returns:
            (N, num_classes, H, W) logits.

        Raises:
            InputError: ``x`` is not a 4-D tensor, has the wrong number of channels, an
                empty side or another dtype than the weights (outside autocast), or would
                shrink to a single value per channel at the bottleneck in training mode.
        """
        if not isinstance(x, torch.Tensor):
            raise InputError(
                f"UNet expects a torch.Tensor, got {type(x).__name__}; "
                "convert images with unetseg.imaging.prepare_image()"
            )
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise InputError(
                f"UNet expects (N, {self.config.in_channels}, H, W) input, got shape "
                f"{tuple(x.shape)}; convert images with unetseg.imaging.prepare_image()"
            )
        weights = self.head.weight.dtype
        # Autocast casts float inputs itself, except float64; otherwise torch's message
        # ("expected scalar type Double but found Float") names neither input nor fix.
        autocast = torch.is_autocast_enabled(x.device.type) and x.dtype != torch.float64
        if not x.is_floating_point() or (x.dtype != weights and not autocast):
            raise InputError(
                f"UNet's weights are {weights} but the input is {x.dtype}; "
                f"pass x.to({weights}) (unetseg.imaging.prepare_image() gives float32)"
            )
        height, width = x.shape[-2], x.shape[-1]
        if height < 1 or width < 1:
            raise InputError(f"UNet needs H, W >= 1, got shape {tuple(x.shape)}")
        multiple = self.config.size_multiple
        if self.training and self.config.norm in ("batch", "instance"):
            # The bottleneck is (H / 2**depth) x (W / 2**depth), rounded up; torch's own
            # "Expected more than 1 value per channel" does not say why or what to do.
            values = -(-height // multiple) * -(-width // multiple)
            batch = self.config.norm == "batch"
            if values * (x.shape[0] if batch else 1) == 1:
                raise InputError(
                    f"in training mode norm={self.config.norm!r} needs more than one value "
                    f"per channel, but input of shape {tuple(x.shape)} shrinks to 1x1 at the "
                    f"bottleneck (depth={self.config.depth}); use "
                    + ("more than one image per batch, " if batch else "")
                    + f"a side over {multiple} pixels, or model.eval()"
                )
        # Always pad (possibly by 0): a shape-dependent branch would stop torch.export
        # from producing one graph for every height and width.
        x = F.pad(x, (0, (-width) % multiple, 0, (-height) % multiple))

        skips = [self.stem(x)]  # (N, base, H, W)
        for down in self.down:
            skips.append(down(skips[-1]))  # each level: channels x2, size /2
        y = self.dropout(skips.pop())  # (N, base * 2**depth, H / 2**depth, W / 2**depth)
        for up in self.up:
            y = up(y, skips.pop())
        logits: torch.Tensor = self.head(y)  # (N, num_classes, H', W')
        return logits[:, :, :height, :width]

    def extra_repr(self) -> str:
        arch = self.config.architecture()
        return ", ".join(f"{k}={v!r}" for k, v in arch.items())
