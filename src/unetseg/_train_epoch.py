"""The pieces of one ``fit()`` epoch: its batches, step checks, validation and records.

Everything here is the same on every rank: decisions that depend on a clock or on one
rank's data (``broadcast_stop``, ``all_finite``) are agreed through ``distributed``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import checkpoint as ckpt
from . import distributed
from ._train_setup import as_pair
from ._utils import class_argmax, logger
from .errors import TrainingError
from .history import History
from .infer import needs_tiles, tiled_indices
from .metrics import confusion_matrix, scores_from_confusion
from .model import UNet

__all__ = [
    "all_finite",
    "broadcast_stop",
    "check_labels",
    "check_loss",
    "current_lr",
    "end_epoch",
    "epoch_batches",
    "item_seed",
    "iterate",
    "log_epoch",
    "record_in_config",
    "validate",
]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one item in one epoch: the same in any process."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def epoch_batches(
    sampler: DistributedSampler[int], epoch: int, seed: int, keyed: bool, batch_size: int
) -> list[list[Any]]:
    """This rank's batches of one epoch: ``(index, item seed)`` keys, or plain indices."""
    sampler.set_epoch(epoch)
    keys: list[Any] = [(i, item_seed(seed, epoch, i)) if keyed else i for i in sampler]
    return [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]


def iterate(loader: DataLoader[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's (images, masks) batches, typed."""
    yield from loader


def validate(
    model: UNet,
    val_data: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    num_classes: int,
    ignore_index: int | None,
    info: distributed.DistInfo,
    class_names: Sequence[str] | None,
) -> dict[str, float]:
    """Score whole validation images; each rank takes every world_size-th image (no padding).

    An image too big for one pass within ``segment()``'s memory budget is run in tiles,
    exactly as ``segment()`` runs it: a whole-image forward of an 8000 x 8000 image took
    14.6 GB at base_channels=16 (OOM on bigger images or wider models).
    """
    # Each module's own mode comes back: train_mode() leaves frozen BatchNorm layers in eval.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    with torch.no_grad():
        for index in range(info.rank, len(val_data), info.world_size):
            image, mask = as_pair(val_data[index], f"val_data[{index}]")
            # The confusion matrix skips such labels: the scores would leave them out silently.
            _refuse_labels(mask, num_classes, ignore_index, f"in val_data[{index}]")
            if needs_tiles(model.config, *image.shape[-2:]):
                name = f"val_data[{index}]"
                prediction = tiled_indices(model, model.config, image, device, amp_dtype, name)
            else:
                with torch.autocast(
                    device.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)
                ):
                    logits = model(image.unsqueeze(0).to(device))
                prediction = class_argmax(logits, dim=1)[0].cpu()
            confusion += confusion_matrix(prediction, mask, num_classes, ignore_index=ignore_index)
    for module, mode in modes:
        module.training = mode
    confusion = distributed.all_reduce_sum(confusion.to(device), info).cpu()
    scores = scores_from_confusion(confusion)
    return {f"val/{k}": v for k, v in scores.as_dict(class_names).items()}


def broadcast_stop(local: bool, info: distributed.DistInfo, device: torch.device) -> bool:
    """Rank 0's decision on every rank (clocks differ between processes)."""
    if not info.enabled:
        return local
    return distributed.broadcast_floats([float(local)], info, device)[0] > 0.5


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def all_finite(loss: torch.Tensor, info: distributed.DistInfo, device: torch.device) -> bool:
    """Whether the loss is finite on every rank."""
    finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
    if info.enabled:  # every rank must take the same branch, or DDP's all-reduce hangs
        finite = distributed.all_reduce_sum(finite.to(device), info) / info.world_size
    return bool(finite.item() == 1.0)


def check_loss(value: object, loss: object) -> None:
    """Refuse a loss output that backward() cannot take, naming the loss.

    Raises:
        TrainingError: not a scalar tensor, or not computed from the logits.
    """
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise TrainingError(
            f"loss {loss!r} returned {got}, not a scalar tensor; average it (reduction='mean')"
        )
    if not value.requires_grad:
        raise TrainingError(
            f"loss {loss!r} returned a tensor with no gradient; compute it from the logits "
            "with torch operations (no .item(), .detach() or numpy)"
        )


def check_labels(
    masks: torch.Tensor, num_classes: int, ignore_index: int | None, step: int
) -> None:
    """Refuse a batch with labels outside the classes (CUDA would fail without saying which).

    Raises:
        TrainingError: naming the labels, the step and the fix.
    """
    _refuse_labels(masks, num_classes, ignore_index, f"at step {step + 1}")


def _refuse_labels(
    masks: torch.Tensor, num_classes: int, ignore_index: int | None, where: str
) -> None:
    bad = (masks < 0) | (masks >= num_classes)
    if ignore_index is not None:
        bad &= masks != ignore_index
    if bool(bad.any()):
        values = sorted({int(v) for v in torch.unique(masks[bad])[:10]})
        raise TrainingError(
            f"mask labels {values} {where} are outside the model's classes "
            f"0..{num_classes - 1}; build the model with more classes, or pass ignore_index "
            "for a void label (SegmentationDataset maps 0/255 and grey masks for you)"
        )


def end_epoch(pos: ckpt.TrainPosition, lr: float, history: History) -> dict[str, float]:
    """The epoch's training record (validation scores are added by the caller)."""
    return {
        "epoch": float(pos.epoch + 1),
        "train_loss": pos.loss_sum / pos.loss_count if pos.loss_count else math.nan,
        "lr": lr,
        "steps": float(pos.step),
        "seconds": pos.train_seconds,
        "images_per_s": pos.images / pos.train_seconds if pos.train_seconds > 0 else math.nan,
    }


def log_epoch(record: dict[str, float]) -> None:
    val = f", val mIoU {record['val/mean_iou']:.4f}" if "val/mean_iou" in record else ""
    logger.info(
        "epoch %d: loss %.4f%s, lr %.2e, %.1f images/s, %.1f s",
        int(record["epoch"]), record["train_loss"], val, record["lr"],
        record["images_per_s"], record["seconds"],
    )  # fmt: skip


def record_in_config(model: UNet, meta: dict[str, Any], history: History) -> None:
    """Write the dataset's metadata and the kept epoch's validation metrics into the config."""
    fields = {k: v for k, v in meta.items() if k not in ("in_channels", "num_classes")}
    source = None
    if history.best_epoch is not None:
        source = history.epochs[history.best_epoch - 1]
    elif history.epochs and "val/mean_iou" in history.epochs[-1]:
        source = history.epochs[-1]
    if source is not None:
        fields["metrics"] = {
            k.removeprefix("val/"): v
            for k, v in source.items()
            if k.startswith("val/") and math.isfinite(v)
        }
    elif model.config.metrics is not None:
        # They scored the weights of an earlier fit(), which this one has changed; kept,
        # config.json and the model card would report them for the new weights.
        logger.info("no validation data: dropping the metrics of the earlier training")
        fields["metrics"] = None
    if fields:
        model.config = model.config.replace(**fields)
