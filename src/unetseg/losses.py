"""Segmentation losses: cross-entropy, soft Dice, and their sum, with class weights and ``ignore_index``.

Every loss takes ``(logits, target)`` with logits ``(N, K, H, W)`` and integer targets
``(N, H, W)`` and returns a scalar. Pixels labelled ``ignore_index`` count nowhere: not in
the cross-entropy mean, not in the Dice sums.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

__all__ = ["LOSSES", "CrossEntropyLoss", "DiceCELoss", "DiceLoss", "LossFn", "make_loss"]

#: Names accepted by ``fit(loss=...)``.
LOSSES = ("ce", "dice", "dice_ce")

#: Any callable ``(logits (N, K, H, W), target (N, H, W) int64) -> scalar tensor``.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _weights_tensor(class_weights: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
    if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(
            f"class_weights must be finite, non-negative and not all zero; got {weights.tolist()}"
        )
    return weights


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy, averaged over the pixels that are not ``ignore_index``.

    Args:
        class_weights: optional weight per class (length K).
        ignore_index: label value to skip, or None.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
    ):
        super().__init__()
        self.ignore_index = ignore_index
        self.weight: torch.Tensor | None
        self.register_buffer("weight", _weights_tensor(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ignore = -100 if self.ignore_index is None else self.ignore_index
        weight = None if self.weight is None else self.weight.to(logits.device)
        # float32 loss whatever the autocast dtype: bf16/fp16 log-softmax loses small losses.
        return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore)


class DiceLoss(nn.Module):
    """Soft Dice loss, ``1 - mean_k dice_k``, with sums over the whole batch ("batch Dice").

    Summing over the batch before dividing keeps small or absent classes in one patch from
    giving noisy, exploding gradients (the choice nnU-Net makes for 2-D data). A class with
    no pixels in either the target or the prediction contributes a Dice of 1 through the
    smoothing term.

    Args:
        class_weights: optional weight per class for the mean over classes.
        ignore_index: label value to skip, or None.
        smooth: added to numerator and denominator.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
        smooth: float = 1.0,
    ):
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.weight: torch.Tensor | None
        self.register_buffer("weight", _weights_tensor(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        probs = logits.float().softmax(dim=1)  # (N, K, H, W)
        valid = (target >= 0) & (target < num_classes)
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        one_hot = F.one_hot(safe_target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
        mask = valid.unsqueeze(1).to(probs.dtype)  # (N, 1, H, W)
        probs = probs * mask
        one_hot = one_hot * mask
        dims = (0, 2, 3)
        intersection = (probs * one_hot).sum(dims)  # (K,)
        total = probs.sum(dims) + one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (total + self.smooth)
        if self.weight is None:
            return 1 - dice.mean()
        weight = self.weight.to(dice.device)
        return 1 - (dice * weight).sum() / weight.sum()


class DiceCELoss(nn.Module):
    """Cross-entropy plus soft Dice, the nnU-Net recipe.

    CE gives calibrated per-pixel gradients, Dice robustness to class imbalance.

    Args:
        class_weights: optional weight per class, used by both terms.
        ignore_index: label value to skip, or None.
        dice_weight: multiplier of the Dice term.
    """

    def __init__(
        self,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
        dice_weight: float = 1.0,
    ):
        super().__init__()
        self.ce = CrossEntropyLoss(class_weights, ignore_index)
        self.dice = DiceLoss(class_weights, ignore_index)
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce: torch.Tensor = self.ce(logits, target)
        dice: torch.Tensor = self.dice(logits, target)
        return ce + self.dice_weight * dice


def make_loss(
    loss: str | LossFn,
    *,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int | None = None,
) -> LossFn:
    """Resolve ``fit(loss=...)``: a name from ``LOSSES`` or a callable used as given.

    Args:
        loss: ``"ce"``, ``"dice"``, ``"dice_ce"``, or a callable ``(logits, target) -> scalar``.
        class_weights: weight per class for the named losses.
        ignore_index: label value the named losses skip.

    Returns:
        A callable loss.

    Raises:
        ConfigError: an unknown name or invalid class weights.
    """
    if callable(loss):
        return loss
    if loss == "ce":
        return CrossEntropyLoss(class_weights, ignore_index)
    if loss == "dice":
        return DiceLoss(class_weights, ignore_index)
    if loss == "dice_ce":
        return DiceCELoss(class_weights, ignore_index)
    raise ConfigError(
        f"loss must be one of {', '.join(map(repr, LOSSES))} or a callable; got {loss!r}"
    )
