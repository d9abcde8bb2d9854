"""``fit()``: from a dataset to a good model fast, resumable bit for bit, torchrun-ready.

The loop reads top to bottom: resolve data and device, build the optimizer, maybe resume,
then for each epoch train on seeded patches, validate, keep the best weights and write a
checkpoint. The default recipe (Dice + CE, AdamW, warmup then cosine decay fitted to the
epoch count or the time budget, a small U-Net's worth of steps, gradient clipping) was
chosen by measurement on CPU; see ``benchmarks/bench_train.py``.

Determinism: every training item is fetched with the key ``(index, item_seed)``, where
the item seed derives from ``(seed, epoch, index)``, and the epoch order comes from a
``DistributedSampler`` seeded with ``seed`` (also with one process). Nothing in data
loading touches the global RNG, so restoring weights, optimizer moments and the torch RNG
from a checkpoint replays the uninterrupted run exactly on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, random_split
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import distributed
from ._utils import logger
from .errors import CheckpointError, DatasetError, TrainingError
from .history import History
from .losses import LossFn, make_loss
from .metrics import confusion_matrix, scores_from_confusion
from .model import UNet

__all__ = ["DEFAULT_MAX_TIME", "Callback", "fit"]

#: Budget in seconds when neither ``epochs`` nor ``max_time`` is given.
DEFAULT_MAX_TIME = 600.0
# Recipe defaults; chosen by benchmarks/bench_train.py (see the commit that set them).
DEFAULT_BATCH_SIZE = 4
DEFAULT_LR = 3e-3
DEFAULT_WEIGHT_DECAY = 1e-4
DEFAULT_PATCH_SIZE = 256
DEFAULT_WARMUP = 0.03  # fraction of the run spent ramping the learning rate up
MIN_LR_RATIO = 0.01  # cosine decays to this fraction of lr


class Callback(Protocol):
    """Hooks ``fit()`` calls; implement any subset (missing methods are skipped).

    ``on_batch_end(step, loss)`` after each optimizer step; ``on_epoch_end(epoch, record,
    history)`` after validation and the checkpoint, returning True to stop training.
    """


def _pick_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cpu_has_fast_bf16() -> bool:
    # AMX / AVX512-BF16 run bf16 convolutions natively; elsewhere bf16 is emulated and slow.
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def _amp_dtype(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
    if amp in (None, False, "off"):
        return None
    if amp in (True, "auto"):
        if device.type == "cuda":
            return torch.float16
        # Measured on a Xeon with AMX (U-Net base 16, 4x256x256 patches, 1 thread):
        # float32 2.0 s/step, bf16 autocast + channels_last 0.62 s/step.
        if device.type == "cpu" and _cpu_has_fast_bf16():
            return torch.bfloat16
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    raise TrainingError(f"amp must be 'auto', 'fp16', 'bf16' or 'off'; got {amp!r}")


def _is_keyed(ds: object) -> bool:
    """A ``SegmentationDataset``-like object: takes ``(index, seed)`` keys, carries metadata."""
    return hasattr(ds, "with_augment") and hasattr(ds, "config_fields")


def _default_augment(patch_size: int) -> Any:
    # Imported here: augment.py is optional for users who pass their own datasets.
    from .augment import Augment  # type: ignore[import-not-found,unused-ignore]

    return Augment(patch_size=patch_size)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def _as_pair(item: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise DatasetError(f"{where}: expected an (image, mask) pair, got {type(item).__name__}")
    image = torch.as_tensor(item[0])
    mask = torch.as_tensor(item[1])
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or mask.dim() != 2:
        raise DatasetError(
            f"{where}: expected image (C, H, W) and mask (H, W), got {tuple(image.shape)} "
            f"and {tuple(mask.shape)}"
        )
    return image.float(), mask.long()


def _collate(batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [_as_pair(item, "training data") for item in batch]
    shapes = {tuple(p[0].shape) for p in pairs} | {(-1, *p[1].shape) for p in pairs}
    if len({s[1:] for s in shapes}) > 1:
        raise DatasetError(
            f"images in a batch differ in size ({sorted(shapes)}); crop them to patches "
            "(SegmentationDataset does by default) or pass batch_size=1"
        )
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _resolve_data(
    train_data: Any, val_data: Any, seed: int, patch_size: int
) -> tuple[Any, Any | None]:
    if isinstance(val_data, float):
        if not 0.0 < val_data < 1.0:
            raise TrainingError(f"val_data as a fraction must be in (0, 1), got {val_data}")
        if hasattr(train_data, "split"):
            train_data, val_data = train_data.split(val_fraction=val_data, seed=seed)
        else:
            n_val = max(1, round(len(train_data) * val_data))
            if n_val >= len(train_data):
                raise TrainingError(f"{len(train_data)} items are too few to split off {val_data}")
            generator = torch.Generator().manual_seed(seed)
            train_data, val_data = random_split(
                train_data, [len(train_data) - n_val, n_val], generator=generator
            )
    if _is_keyed(train_data) and train_data.augment is None:
        train_data = train_data.with_augment(_default_augment(patch_size))
    if len(train_data) == 0:
        raise DatasetError("train_data is empty")
    if val_data is not None and len(val_data) == 0:
        raise DatasetError("val_data is empty")
    return train_data, val_data


def _check_compatible(model: UNet, train_data: Any, seed: int) -> dict[str, Any]:
    """Fail before training when data and model disagree; return the dataset metadata."""
    config = model.config
    meta: dict[str, Any] = dict(train_data.config_fields()) if _is_keyed(train_data) else {}
    for name in ("in_channels", "num_classes"):
        if name in meta and meta[name] != getattr(config, name):
            raise TrainingError(
                f"the data has {name}={meta[name]} but the model has {name}="
                f"{getattr(config, name)}; build the model with UNet(in_channels="
                f"{meta.get('in_channels', config.in_channels)}, num_classes="
                f"{meta.get('num_classes', config.num_classes)})"
            )
    first = train_data[(0, seed)] if _is_keyed(train_data) else train_data[0]
    image, _ = _as_pair(first, "train_data[0]")
    if image.shape[0] != config.in_channels:
        raise TrainingError(
            f"the data's images have {image.shape[0]} channels but the model takes "
            f"in_channels={config.in_channels}; build the model with "
            f"UNet(in_channels={image.shape[0]}, ...) or convert the images"
        )
    return meta


def _lr_at(progress: float, lr: float, warmup: float) -> float:
    """Linear warmup from lr/10, then cosine decay to ``MIN_LR_RATIO * lr`` at progress 1."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return lr * (0.1 + 0.9 * progress / warmup)
    t = (progress - warmup) / max(1.0 - warmup, 1e-12)
    return lr * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * t)))


def _epoch_batches(
    sampler: DistributedSampler[int], epoch: int, seed: int, keyed: bool, batch_size: int
) -> list[list[Any]]:
    sampler.set_epoch(epoch)
    keys: list[Any] = [(i, _item_seed(seed, epoch, i)) if keyed else i for i in sampler]
    return [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]


def _validate(
    model: UNet,
    val_data: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    num_classes: int,
    ignore_index: int | None,
    info: distributed.DistInfo,
    class_names: Sequence[str] | None,
) -> dict[str, float]:
    """Score whole validation images; each rank takes every world_size-th image (no padding)."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    with torch.no_grad():
        for index in range(info.rank, len(val_data), info.world_size):
            image, mask = _as_pair(val_data[index], f"val_data[{index}]")
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)
            ):
                logits = model(image.unsqueeze(0).to(device))
            prediction = logits.argmax(dim=1)[0].cpu()
            confusion += confusion_matrix(prediction, mask, num_classes, ignore_index=ignore_index)
    model.train(was_training)
    confusion = distributed.all_reduce_sum(confusion.to(device), info).cpu()
    scores = scores_from_confusion(confusion)
    return {f"val/{k}": v for k, v in scores.as_dict(class_names).items()}


def fit(
    model: UNet,
    train_data: Dataset[Any] | Any,
    val_data: Dataset[Any] | float | None = None,
    *,
    epochs: int | None = None,
    max_time: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    loss: str | LossFn = "dice_ce",
    class_weights: Sequence[float] | None = None,
    ignore_index: int | None = None,
    patch_size: int = DEFAULT_PATCH_SIZE,
    warmup: float = DEFAULT_WARMUP,
    grad_clip: float | None = 1.0,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    amp: str | bool | None = "auto",
    on_nonfinite: str = "raise",
    num_workers: int = 0,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
) -> History:
    """Train ``model`` on ``train_data``; stop after ``epochs`` or ``max_time`` seconds.

    Args:
        model: a ``UNet`` (anything with a ``config`` like ``UNetConfig``).
        train_data: a ``SegmentationDataset`` (patches, augmentation and metadata by
            default), or any dataset of ``(image (C, H, W), mask (H, W))`` pairs.
        val_data: a dataset scored every epoch, or a fraction of ``train_data`` split off
            with ``seed``; None for no validation.
        epochs: passes over ``train_data``. Whichever of ``epochs``/``max_time`` comes
            first stops training; with neither, ``max_time=DEFAULT_MAX_TIME``.
        max_time: wall-clock budget in seconds. With only ``max_time`` the learning-rate
            schedule runs on the elapsed fraction of the budget.
        batch_size: images per optimizer step (per process under torchrun).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        loss: ``"dice_ce"`` (default), ``"ce"``, ``"dice"`` or a callable ``(logits, target)``.
        class_weights: one weight per class for the named losses.
        ignore_index: label skipped by loss and metrics; default the dataset's.
        patch_size: side of the training patches of the default augmentation.
        warmup: fraction of the run spent warming the learning rate up.
        grad_clip: max gradient norm, or None.
        seed: seeds sampling, augmentation and dropout; the same seed gives the same
            weights on CPU, interrupted or not.
        checkpoint_dir: folder for ``last.safetensors`` (every epoch) and
            ``interrupted.safetensors`` (on Ctrl-C).
        resume: continue from the newest checkpoint in ``checkpoint_dir``.
        device: ``"cuda"``, ``"mps"``, ``"cpu"``...; default the best available.
        amp: ``"auto"`` (fp16 + GradScaler on CUDA, float32 elsewhere), ``"fp16"``,
            ``"bf16"`` or ``"off"``.
        on_nonfinite: ``"raise"`` a ``TrainingError`` naming the step, or ``"skip"`` the batch.
        num_workers: DataLoader worker processes (0 loads in this process).
        callbacks: objects with ``on_batch_end(step, loss)`` and/or
            ``on_epoch_end(epoch, record, history) -> bool | None`` (True stops).
        progress: show a tqdm bar per epoch.

    Returns:
        The ``History``; the model ends with the best validation weights when there is
        validation data (``history.restored_best``), and ``model.config`` records the
        dataset's metadata and the final validation metrics.

    Raises:
        TrainingError: bad arguments, data and model disagreeing, a non-finite loss.
        CheckpointError: ``resume=True`` without a complete checkpoint, or a corrupt one.
        DatasetError: empty or malformed data.
    """
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise TrainingError(f"epochs must be a positive integer or None, got {epochs!r}")
    if max_time is not None and not (max_time > 0 and math.isfinite(max_time)):
        raise TrainingError(f"max_time must be a positive number of seconds, got {max_time!r}")
    if epochs is None and max_time is None:
        max_time = DEFAULT_MAX_TIME
        logger.info("neither epochs nor max_time given: training for %.0f s", max_time)
    if batch_size < 1:
        raise TrainingError(f"batch_size must be >= 1, got {batch_size}")
    if on_nonfinite not in ("raise", "skip"):
        raise TrainingError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}")
    if resume and checkpoint_dir is None:
        raise CheckpointError("resume=True needs checkpoint_dir, the folder to resume from")
    if not isinstance(model, UNet):
        raise TrainingError(f"fit() trains a unetseg UNet, got {type(model).__name__}")

    start_clock = time.monotonic()
    info = distributed.setup(_pick_device(device, distributed._env_int("LOCAL_RANK", 0)))
    try:
        return _fit(
            model, train_data, val_data, info, start_clock,
            epochs=epochs, max_time=max_time, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, loss=loss, class_weights=class_weights,
            ignore_index=ignore_index, patch_size=patch_size, warmup=warmup,
            grad_clip=grad_clip, seed=seed, checkpoint_dir=checkpoint_dir, resume=resume,
            device=device, amp=amp, on_nonfinite=on_nonfinite, num_workers=num_workers,
            callbacks=callbacks, progress=progress,
        )  # fmt: skip
    finally:
        # Weights leave fit() in the standard layout: safetensors writers need contiguous
        # tensors, and users expect the module they passed in.
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        distributed.teardown(info)


def _fit(
    model: UNet,
    train_data: Any,
    val_data: Any,
    info: distributed.DistInfo,
    start_clock: float,
    *,
    epochs: int | None,
    max_time: float | None,
    batch_size: int,
    lr: float,
    weight_decay: float,
    loss: str | LossFn,
    class_weights: Sequence[float] | None,
    ignore_index: int | None,
    patch_size: int,
    warmup: float,
    grad_clip: float | None,
    seed: int,
    checkpoint_dir: str | Path | None,
    resume: bool,
    device: str | torch.device | None,
    amp: str | bool | None,
    on_nonfinite: str,
    num_workers: int,
    callbacks: Sequence[Any],
    progress: bool,
) -> History:
    dev = _pick_device(device, info.local_rank)
    amp_dtype = _amp_dtype(amp, dev)
    config = model.config
    num_classes = int(config.num_classes)

    train_data, val_data = _resolve_data(train_data, val_data, seed, patch_size)
    meta = _check_compatible(model, train_data, seed)
    if ignore_index is None:
        ignore_index = meta.get("ignore_index", getattr(train_data, "ignore_index", None))
    if class_weights is not None and len(class_weights) != num_classes:
        raise TrainingError(
            f"class_weights has {len(class_weights)} entries but the model has {num_classes} classes"
        )
    loss_fn = make_loss(loss, class_weights=class_weights, ignore_index=ignore_index)
    keyed = _is_keyed(train_data)

    torch.manual_seed(seed)
    # channels_last: ~1.3x faster convolutions on CPU (oneDNN) and on CUDA tensor cores.
    memory_format = torch.channels_last if dev.type in ("cpu", "cuda") else torch.contiguous_format
    model.to(dev, memory_format=memory_format)  # type: ignore[call-overload]
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    settings = {"seed": seed, "batch_size": batch_size, "lr": lr, "epochs": epochs,
                "max_time": max_time, "world_size": info.world_size}  # fmt: skip

    pos, best_state = ckpt.TrainPosition(), None
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and ckpt_dir is not None:
        pos, best_state = ckpt.restore_training(
            ckpt.find_latest(ckpt_dir), model, optimizer, scaler, settings
        )
    history = pos.history

    net: nn.Module = model
    if info.enabled:
        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    sampler: DistributedSampler[int] = DistributedSampler(
        cast(Dataset[int], range(len(train_data))),
        num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed,
    )  # fmt: skip
    steps_per_epoch = math.ceil(len(sampler) / batch_size)
    total_steps = epochs * steps_per_epoch if epochs is not None else None
    session_start = start_clock

    def elapsed() -> float:
        return pos.elapsed + time.monotonic() - session_start

    def progress_fraction() -> float:
        fractions = [0.0]
        if total_steps:
            fractions.append(pos.step / total_steps)
        if max_time:
            fractions.append(elapsed() / max_time)
        return max(fractions)

    def save(name: str) -> None:
        if ckpt_dir is None or not info.is_main:
            return
        snapshot = ckpt.TrainPosition(**{**pos.__dict__, "elapsed": elapsed()})
        checkpoint = ckpt.training_checkpoint(
            model, optimizer, scaler, best_state, snapshot, settings
        )
        ckpt.write_checkpoint(ckpt_dir / f"{name}.safetensors", checkpoint)

    stop_reason: str | None = None
    try:
        while stop_reason is None:
            if epochs is not None and pos.epoch >= epochs:
                stop_reason = "epochs"
                break
            if max_time is not None and _broadcast_stop(elapsed() >= max_time, info, dev):
                stop_reason = "max_time"
                break
            batches = _epoch_batches(sampler, pos.epoch, seed, keyed, batch_size)
            loader = DataLoader(
                train_data, batch_sampler=batches[pos.batch :], collate_fn=_collate,
                num_workers=num_workers, generator=torch.Generator(),
            )  # fmt: skip
            bar = tqdm(
                total=len(batches), initial=pos.batch, desc=f"epoch {pos.epoch + 1}",
                disable=not progress or not info.is_main, leave=False, unit="batch",
            )  # fmt: skip
            tick = time.monotonic()
            for images, masks in _iterate(loader):
                images = images.to(dev, memory_format=memory_format, non_blocking=True)
                masks = masks.to(dev, non_blocking=True)
                _check_labels(masks, num_classes, ignore_index, pos.step)
                frac = progress_fraction()
                if info.enabled:
                    frac = distributed.broadcast_floats([frac], info, dev)[0]
                current_lr = _lr_at(frac, lr, warmup)
                for group in optimizer.param_groups:
                    group["lr"] = current_lr
                with torch.autocast(
                    dev.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)
                ):
                    logits = net(images)  # (B, K, H, W)
                    loss_value = loss_fn(logits, masks)
                finite = _all_finite(loss_value, info, dev)
                optimizer.zero_grad(set_to_none=True)
                if finite:
                    scaler.scale(loss_value).backward()  # type: ignore[no-untyped-call]
                    if grad_clip is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    pos.loss_sum += float(loss_value.detach())
                    pos.loss_count += 1
                elif on_nonfinite == "raise":
                    raise TrainingError(
                        f"loss is {float(loss_value.detach())} at step {pos.step + 1} (epoch "
                        f"{pos.epoch + 1}, batch {pos.batch + 1}); lower lr, check the data for "
                        "NaN/inf, or pass on_nonfinite='skip'"
                    )
                else:
                    history.skipped_batches += 1
                    logger.warning("non-finite loss at step %d: batch skipped", pos.step + 1)
                pos.step += 1
                pos.batch += 1
                pos.images += images.shape[0]
                now = time.monotonic()
                pos.train_seconds += now - tick
                tick = now
                if bar.n % 5 == 0 or bar.n + 1 == len(batches):
                    bar.set_postfix(loss=f"{pos.loss_sum / max(pos.loss_count, 1):.4f}",
                                    img_s=f"{pos.images / max(pos.train_seconds, 1e-9):.1f}")  # fmt: skip
                bar.update(1)
                for callback in callbacks:
                    hook = getattr(callback, "on_batch_end", None)
                    if hook is not None:
                        hook(pos.step, float(loss_value.detach()))
                if max_time is not None and _broadcast_stop(elapsed() >= max_time, info, dev):
                    stop_reason = "max_time"
                    break
            bar.close()
            distributed.sync_buffers(model, info)
            if info.enabled:  # the epoch's loss over all ranks' batches
                totals = torch.tensor([pos.loss_sum, float(pos.loss_count)], dtype=torch.float64)
                totals = distributed.all_reduce_sum(totals.to(dev), info).cpu()
                pos.loss_sum, pos.loss_count = float(totals[0]), int(totals[1])
            record = _end_epoch(pos, _current_lr(optimizer), history)
            if val_data is not None:
                record.update(
                    _validate(
                        model,
                        val_data,
                        dev,
                        amp_dtype,
                        num_classes,
                        ignore_index,
                        info,
                        meta.get("class_names", model.config.class_names),
                    )
                )
                miou = record["val/mean_iou"]
                if not math.isnan(miou) and (
                    history.best_mean_iou is None or miou > history.best_mean_iou
                ):
                    history.best_epoch, history.best_mean_iou = pos.epoch + 1, miou
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history.epochs.append(record)
            history.steps, history.seconds = pos.step, elapsed()
            record["seconds"] = time.monotonic() - tick + record["seconds"]
            _log_epoch(record)
            pos.epoch, pos.batch = pos.epoch + 1, 0
            pos.loss_sum, pos.loss_count, pos.images, pos.train_seconds = 0.0, 0, 0, 0.0
            save("last")
            for callback in callbacks:
                hook = getattr(callback, "on_epoch_end", None)
                if hook is not None and hook(pos.epoch, record, history):
                    stop_reason = "callback"
    except KeyboardInterrupt:
        logger.warning("interrupted at step %d; saving an 'interrupted' checkpoint", pos.step)
        save("interrupted")
        raise

    history.stop_reason = stop_reason
    history.steps, history.seconds = pos.step, elapsed()
    save("last")  # the last weights, not the best: a resume with more epochs continues them
    if best_state is not None:
        model.load_state_dict(best_state)
        history.restored_best = True
        logger.info("restored the best weights: epoch %s, val mIoU %.4f",
                    history.best_epoch, history.best_mean_iou or math.nan)  # fmt: skip
    _record_in_config(model, meta, history)
    return history


def _broadcast_stop(local: bool, info: distributed.DistInfo, device: torch.device) -> bool:
    """Rank 0's decision on every rank (clocks differ between processes)."""
    if not info.enabled:
        return local
    return distributed.broadcast_floats([float(local)], info, device)[0] > 0.5


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _iterate(loader: DataLoader[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    yield from loader


def _all_finite(loss: torch.Tensor, info: distributed.DistInfo, device: torch.device) -> bool:
    finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
    if info.enabled:  # every rank must take the same branch, or DDP's all-reduce hangs
        finite = distributed.all_reduce_sum(finite.to(device), info) / info.world_size
    return bool(finite.item() == 1.0)


def _check_labels(
    masks: torch.Tensor, num_classes: int, ignore_index: int | None, step: int
) -> None:
    bad = (masks < 0) | (masks >= num_classes)
    if ignore_index is not None:
        bad &= masks != ignore_index
    if bool(bad.any()):
        values = sorted({int(v) for v in torch.unique(masks[bad])[:10]})
        raise TrainingError(
            f"mask labels {values} at step {step + 1} are outside the model's classes "
            f"0..{num_classes - 1}; build the model with more classes, or pass ignore_index "
            "for a void label (SegmentationDataset maps 0/255 and grey masks for you)"
        )


def _end_epoch(pos: ckpt.TrainPosition, lr: float, history: History) -> dict[str, float]:
    return {
        "epoch": float(pos.epoch + 1),
        "train_loss": pos.loss_sum / pos.loss_count if pos.loss_count else math.nan,
        "lr": lr,
        "steps": float(pos.step),
        "seconds": pos.train_seconds,
        "images_per_s": pos.images / pos.train_seconds if pos.train_seconds > 0 else math.nan,
    }


def _log_epoch(record: dict[str, float]) -> None:
    val = f", val mIoU {record['val/mean_iou']:.4f}" if "val/mean_iou" in record else ""
    logger.info(
        "epoch %d: loss %.4f%s, lr %.2e, %.1f images/s, %.1f s",
        int(record["epoch"]), record["train_loss"], val, record["lr"],
        record["images_per_s"], record["seconds"],
    )  # fmt: skip


def _record_in_config(model: UNet, meta: dict[str, Any], history: History) -> None:
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
    if fields:
        model.config = model.config.replace(**fields)
