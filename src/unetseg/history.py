"""``History``: what ``fit()`` did, epoch by epoch, and a picture of it."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["History"]


@dataclass
class History:
    """The record of one ``fit()`` run (resumed runs continue the same record).

    Attributes:
        epochs: one dict per epoch with ``epoch``, ``train_loss``, ``lr`` (at the end of
            the epoch), ``seconds``, ``images_per_s``, ``steps`` (optimizer steps so far),
            and when there is validation data ``val/mean_iou``, ``val/mean_dice``,
            ``val/pixel_accuracy``, ``val/iou/<class>``, ``val/dice/<class>``.
        best_epoch: epoch with the highest validation mean IoU, or None without validation.
        best_mean_iou: that epoch's validation mean IoU.
        restored_best: True when the model's final weights are those of ``best_epoch``
            rather than of the last epoch.
        stop_reason: ``"epochs"``, ``"max_time"`` or ``"callback"``.
        steps: optimizer steps taken in all.
        seconds: wall-clock seconds of training, resumed runs included.
        skipped_batches: batches skipped for a non-finite loss (``on_nonfinite="skip"``).
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_mean_iou: float | None = None
    restored_best: bool = False
    stop_reason: str | None = None
    steps: int = 0
    seconds: float = 0.0
    skipped_batches: int = 0

    def __len__(self) -> int:
        return len(self.epochs)

    def metric(self, name: str) -> list[float]:
        """One metric over the epochs.

        Args:
            name: a key of the epoch records, e.g. ``"val/mean_iou"`` or ``"val/iou/<class>"``.

        Returns:
            One value per epoch, NaN where an epoch lacks it (``val/...`` without validation).

        Raises:
            InputError: no epoch has ``name`` (a typo would otherwise give a curve of NaNs);
                the message lists the names there are.
        """
        names = {key for record in self.epochs for key in record}
        validated = any(key.startswith("val/") for key in names)
        if self.epochs and name not in names and (validated or not name.startswith("val/")):
            raise InputError(f"no metric {name!r} in this history; it has {sorted(names)}")
        return [float(record.get(name, math.nan)) for record in self.epochs]

    @property
    def train_loss(self) -> list[float]:
        """Mean training loss of each epoch."""
        return self.metric("train_loss")

    @property
    def val_mean_iou(self) -> list[float]:
        """Validation mean IoU of each epoch (NaN without validation data)."""
        return self.metric("val/mean_iou")

    def to_dict(self) -> dict[str, Any]:
        """JSON-native copy (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """The ``History`` that ``to_dict()`` returned ``data`` for."""
        return cls(**data)

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG of the training loss, validation scores and learning rate.

        Args:
            path: where to write the PNG.

        Returns:
            The path written.

        Raises:
            ImportError: matplotlib is not installed (``pip install "unetseg[plot]"``).
        """
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError(
                'History.plot() needs matplotlib: pip install "unetseg[plot]" '
                "(or pip install matplotlib)"
            ) from None
        epochs = self.metric("epoch")
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        # Markers, so a single epoch (or one between NaNs) is a visible point, not nothing.
        axes[0].plot(epochs, self.train_loss, marker=".", label="train loss")
        axes[0].set_title("training loss")
        val_names = ["val/mean_iou", "val/mean_dice", "val/pixel_accuracy"]
        if any(not math.isnan(v) for v in self.val_mean_iou):
            for name in [n for n in val_names if any(n in record for record in self.epochs)]:
                axes[1].plot(epochs, self.metric(name), marker=".", label=name.removeprefix("val/"))
            if self.best_epoch is not None:
                axes[1].axvline(self.best_epoch, color="grey", linestyle=":", label="best")
            axes[1].legend()
        else:
            axes[1].text(0.5, 0.5, "no validation data", ha="center", va="center")
        axes[1].set_title("validation")
        axes[2].plot(epochs, self.metric("lr"), marker=".")
        axes[2].set_title("learning rate")
        for ax in axes:
            ax.set_xlabel("epoch")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
