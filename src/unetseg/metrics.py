"""Segmentation metrics from one confusion matrix: per-class IoU and Dice, mIoU, accuracy.

Counting into a confusion matrix first means metrics add up exactly over batches,
images and (under torchrun) processes: sum the matrices, then score once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError

__all__ = ["Scores", "confusion_matrix", "scores_from_confusion"]


def confusion_matrix(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    *,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Count (target, prediction) pairs.

    Args:
        predictions: (...) integer class indices.
        targets: (...) integer labels of the same shape; ``ignore_index`` pixels and any
            label outside ``[0, num_classes)`` are skipped.
        num_classes: K.
        ignore_index: label value to leave out of the counts.

    Returns:
        (K, K) int64 tensor; row = true class, column = predicted class.

    Raises:
        InputError: ``predictions`` and ``targets`` differ in shape.
    """
    if predictions.shape != targets.shape:
        raise InputError(
            f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ "
            "in shape; pass the prediction and the true mask of the same image"
        )
    targets = targets.reshape(-1).long()
    predictions = predictions.reshape(-1).long()
    keep = (targets >= 0) & (targets < num_classes)
    if ignore_index is not None:
        keep &= targets != ignore_index
    index = targets[keep] * num_classes + predictions[keep]
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Scores:
    """Scores of one confusion matrix. Classes absent from both truth and prediction get NaN."""

    iou: tuple[float, ...]  # per class
    dice: tuple[float, ...]  # per class
    mean_iou: float  # over classes present in truth or prediction
    mean_dice: float
    pixel_accuracy: float

    def as_dict(self, class_names: Sequence[str] | None = None) -> dict[str, float]:
        """Flat ``{name: value}`` for logs, histories and model cards."""
        names = list(class_names) if class_names else [str(i) for i in range(len(self.iou))]
        out = {
            "mean_iou": self.mean_iou,
            "mean_dice": self.mean_dice,
            "pixel_accuracy": self.pixel_accuracy,
        }
        for name, iou, dice in zip(names, self.iou, self.dice, strict=True):
            out[f"iou/{name}"] = iou
            out[f"dice/{name}"] = dice
        return out


def scores_from_confusion(confusion: torch.Tensor | np.ndarray) -> Scores:
    """IoU = TP / (TP + FP + FN), Dice = 2TP / (2TP + FP + FN), per class, from a (K, K) matrix.

    Args:
        confusion: (K, K) counts, row = true class, column = predicted class, as
            ``confusion_matrix`` returns (summed over images, batches or processes).

    Returns:
        The ``Scores``: per-class IoU and Dice (NaN for a class absent from both truth and
        prediction), their means over the other classes, and pixel accuracy.
    """
    matrix = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion)
    matrix = matrix.astype(np.float64)
    true_positive = np.diag(matrix)
    false_positive = matrix.sum(axis=0) - true_positive
    false_negative = matrix.sum(axis=1) - true_positive
    union = true_positive + false_positive + false_negative
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        dice = np.where(union > 0, 2 * true_positive / (union + true_positive), np.nan)
    total = matrix.sum()
    present = union > 0
    return Scores(
        iou=tuple(float(v) for v in iou),
        dice=tuple(float(v) for v in dice),
        mean_iou=float(iou[present].mean()) if present.any() else float("nan"),
        mean_dice=float(dice[present].mean()) if present.any() else float("nan"),
        pixel_accuracy=float(true_positive.sum() / total) if total > 0 else float("nan"),
    )
