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

What is settled before the loop (data, precision, the schedule) is in ``_train_setup``;
the pieces of an epoch (batches, checks, validation, records) in ``_train_epoch``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from . import _retrain as retrain
from . import _train_epoch as steps
from . import _train_setup as setup
from . import checkpoint as ckpt
from . import distributed
from ._utils import logger, pick_device
from .errors import CheckpointError, TrainingError
from .history import History
from .losses import LossFn, make_loss
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


class Callback(Protocol):
    """Hooks ``fit()`` calls; implement any subset (missing methods are skipped).

    ``on_batch_end(step, loss)`` after each optimizer step; ``on_epoch_end(epoch, record,
    history)`` after validation and the checkpoint, returning True to stop training.
    """


def _default_augment(patch_size: int) -> Any:
    # Imported here: augment.py is optional for users who pass their own datasets. A module
    # attribute, looked up at each fit(), so tests and benchmarks can swap it.
    from .augment import Augment  # type: ignore[import-not-found,unused-ignore]

    return Augment(patch_size=patch_size)


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
            default), or any dataset of ``(image (C, H, W), mask (H, W))`` pairs
            (integer images are scaled by their dtype's range, as ``segment()`` does; no
            normalisation, so a model whose config has ``image_mean`` gets a warning).
            A torch ``Subset``/``ConcatDataset`` of a ``SegmentationDataset`` is refused.
        val_data: a dataset scored every epoch (a ``SegmentationDataset`` built with
            ``like=train_data``, so its masks map to the same classes), or a fraction of
            ``train_data`` split off with ``seed``; None for no validation. A torch
            ``Subset``/``ConcatDataset`` of a ``SegmentationDataset`` is refused here too.
        epochs: passes over ``train_data``. Whichever of ``epochs``/``max_time`` comes
            first stops training; with neither, ``max_time=DEFAULT_MAX_TIME``.
        max_time: wall-clock budget in seconds. With only ``max_time`` the learning-rate
            schedule runs on the elapsed fraction of the budget.
        batch_size: images per optimizer step (per process under torchrun).
        lr: peak learning rate of AdamW (> 0).
        weight_decay: AdamW's decoupled weight decay (>= 0).
        loss: ``"dice_ce"`` (default), ``"ce"``, ``"dice"`` or a callable ``(logits, target)``.
        class_weights: one weight per class for the named losses.
        ignore_index: label skipped by loss and metrics; default the dataset's. A
            ``SegmentationDataset`` built without one reads this mask value as void when
            the model's classes leave it out (index masks 0..10 with void 11 then train
            ``UNet(..., num_classes=11)``). Recorded in ``model.config.ignore_index``
            (unless it is one of the model's classes), for plain pairs too.
        patch_size: side of the training patches of the default augmentation.
        warmup: fraction of the run spent warming the learning rate up, in [0, 1).
        grad_clip: max gradient norm (> 0), or None.
        seed: seeds sampling, augmentation and dropout (an integer >= 0); the same seed
            gives the same weights on CPU, interrupted or not.
        checkpoint_dir: folder for ``last.safetensors`` (every epoch) and
            ``interrupted.safetensors`` (on Ctrl-C).
        resume: continue from the newest checkpoint in ``checkpoint_dir``.
        device: ``"cuda"``, ``"mps"``, ``"cpu"``...; default the best available.
        amp: ``"auto"`` (fp16 + GradScaler on CUDA, bf16 autocast on CPUs that run it
            natively, float32 elsewhere), ``"fp16"``, ``"bf16"`` or ``"off"``.
        on_nonfinite: ``"raise"`` a ``TrainingError`` naming the step, or ``"skip"`` the batch.
        num_workers: DataLoader worker processes (0 loads in this process). Workers
            started with "spawn" (macOS, Windows) decode every sample they read: a
            ``SegmentationDataset`` pickles without its decoded cache.
        callbacks: objects with ``on_batch_end(step, loss)`` and/or
            ``on_epoch_end(epoch, record, history) -> bool | None`` (True stops).
        progress: show a tqdm bar per epoch.

    A model trained before (a saved one, or a second ``fit()``) keeps its class names when
    ``train_data`` maps masks to classes as it does but was read without names; data that
    maps them otherwise, or normalises images far from the model's ``image_mean``/
    ``image_std``, is warned about (build it with ``like=model``). Parameters with
    ``requires_grad=False`` are not trained, and BatchNorm layers whose weights are all
    frozen keep their running statistics too.

    Returns:
        The ``History``; the model ends with the best validation weights when there is
        validation data (``history.restored_best``), and ``model.config`` records the
        dataset's metadata and the validation metrics of the epoch it kept (none without
        validation data: those of an earlier training are dropped). On Ctrl-C
        (``KeyboardInterrupt``, re-raised) the model is left the same way.

    Raises:
        TrainingError: bad arguments (out-of-range values, a device this machine lacks),
            data and model disagreeing, a non-finite loss.
        ConfigError: an unknown ``loss`` name or invalid ``class_weights`` values.
        CheckpointError: ``resume=True`` without a complete checkpoint, a corrupt one, or
            a checkpoint that cannot be written (a full disk; the previous one stays).
        DatasetError: empty or malformed data, or ``val_data`` that maps mask values to
            classes unlike ``train_data`` (build it with ``like=train_data``).
    """
    setup.check_arguments(
        epochs=epochs, max_time=max_time, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, warmup=warmup, grad_clip=grad_clip, patch_size=patch_size,
        seed=seed, num_workers=num_workers, ignore_index=ignore_index, callbacks=callbacks,
        on_nonfinite=on_nonfinite,
    )  # fmt: skip
    if epochs is None and max_time is None:
        max_time = DEFAULT_MAX_TIME
        logger.info("neither epochs nor max_time given: training for %.0f s", max_time)
    if resume and checkpoint_dir is None:
        raise CheckpointError("resume=True needs checkpoint_dir, the folder to resume from")
    setup.check_model(model)

    # Plain Python numbers: numpy ones reach the checkpoint's JSON (settings, the optimizer's
    # param groups), which cannot hold them.
    seed, batch_size, num_workers = int(seed), int(batch_size), int(num_workers)
    lr, weight_decay, warmup = float(lr), float(weight_decay), float(warmup)
    epochs = int(epochs) if epochs is not None else None
    max_time = float(max_time) if max_time is not None else None
    grad_clip = float(grad_clip) if grad_clip is not None else None
    start_clock = time.monotonic()
    info = distributed.setup(pick_device(device, distributed.local_rank(), TrainingError))
    if not info.is_main:  # rank 0 alone logs; the other ranks would repeat each line
        logger.addFilter(_drop_record)
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
        logger.removeFilter(_drop_record)
        distributed.teardown(info)


def _drop_record(record: logging.LogRecord) -> bool:
    return False


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
    dev = pick_device(device, info.local_rank, TrainingError)
    amp_dtype = setup.amp_dtype(amp, dev)
    config = model.config
    num_classes = int(config.num_classes)

    train_data, val_data = setup.apply_ignore_index(train_data, val_data, ignore_index, num_classes)
    train_data, val_data = setup.resolve_data(
        train_data, val_data, seed, patch_size, _default_augment
    )
    setup.check_same_mapping(train_data, val_data)
    meta = retrain.carry_over(config, setup.check_compatible(model, train_data, seed, val_data))
    if (flips := setup.trained_flips(train_data)) is not None:
        meta["tta_flips"] = flips
    if ignore_index is None:
        ignore_index = meta.get("ignore_index", getattr(train_data, "ignore_index", None))
    elif (
        meta.get("ignore_index") is None
        and not 0 <= ignore_index < num_classes  # a class the model counts: not void
        and -(2**31) <= ignore_index < 2**31  # what UNetConfig holds
    ):
        # Plain pairs carry no metadata: record the void label the loss skipped, so that
        # colorize/save_mask of a ground-truth mask and like=model test sets know it.
        meta["ignore_index"] = int(ignore_index)
    if class_weights is not None and (
        isinstance(class_weights, str)
        or not hasattr(class_weights, "__len__")
        or len(class_weights) != num_classes
    ):
        raise TrainingError(
            f"class_weights must hold one weight per class, {num_classes} for this model; "
            f"got {class_weights!r}"
        )
    loss_fn = make_loss(loss, class_weights=class_weights, ignore_index=ignore_index)
    keyed = setup.is_keyed(train_data)

    torch.manual_seed(seed)
    # channels_last: ~1.3x faster convolutions on CPU (oneDNN) and on CUDA tensor cores.
    memory_format = torch.channels_last if dev.type in ("cpu", "cuda") else torch.contiguous_format
    model.to(dev, memory_format=memory_format)  # type: ignore[call-overload]
    retrain.train_mode(model)
    retrain.describe_frozen(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    settings = {"seed": seed, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                "epochs": epochs, "max_time": max_time, "world_size": info.world_size}  # fmt: skip

    pos, best_state = ckpt.TrainPosition(), None
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and ckpt_dir is not None:
        pos, best_state = ckpt.restore_training(
            ckpt.find_latest(ckpt_dir), model, optimizer, scaler, settings
        )
        for group in optimizer.param_groups:  # the checkpoint's would override the argument
            group["weight_decay"] = weight_decay
    history = pos.history
    if ckpt_dir is not None and info.is_main:
        try:  # now, not after the first epoch's training
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CheckpointError(
                f"checkpoint_dir {ckpt_dir} cannot hold checkpoints ({err.strerror}); "
                "pass a folder path"
            ) from None
        ckpt.remove_leftovers(ckpt_dir)  # each kill -9 mid-write left a checkpoint-sized file

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
        if name == "last":
            # Older than this one, perhaps left by another run in this folder: resume takes
            # the highest step, so a stale one with more steps would win.
            (ckpt_dir / "interrupted.safetensors").unlink(missing_ok=True)

    stop_reason: str | None = None
    bar: tqdm[Any] | None = None
    try:
        while stop_reason is None:
            if epochs is not None and pos.epoch >= epochs:
                stop_reason = "epochs"
                break
            if max_time is not None and steps.broadcast_stop(elapsed() >= max_time, info, dev):
                stop_reason = "max_time"
                break
            batches = steps.epoch_batches(sampler, pos.epoch, seed, keyed, batch_size)
            loader = DataLoader(
                train_data, batch_sampler=batches[pos.batch :], collate_fn=setup.collate,
                num_workers=num_workers, generator=torch.Generator(),
            )  # fmt: skip
            bar = tqdm(
                total=len(batches), initial=pos.batch, desc=f"epoch {pos.epoch + 1}",
                disable=not progress or not info.is_main, leave=False, unit="batch",
            )  # fmt: skip
            tick = time.monotonic()
            for images, masks in steps.iterate(loader):
                images = images.to(dev, memory_format=memory_format, non_blocking=True)
                masks = masks.to(dev, non_blocking=True)
                steps.check_labels(masks, num_classes, ignore_index, pos.step)
                frac = progress_fraction()
                if info.enabled:
                    frac = distributed.broadcast_floats([frac], info, dev)[0]
                current_lr = setup.lr_at(frac, lr, warmup)
                for group in optimizer.param_groups:
                    group["lr"] = current_lr
                with torch.autocast(
                    dev.type, dtype=amp_dtype or torch.float32, enabled=bool(amp_dtype)
                ):
                    logits = net(images)  # (B, K, H, W)
                    loss_value = loss_fn(logits, masks)
                steps.check_loss(loss_value, loss)
                finite = steps.all_finite(loss_value, info, dev)
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
                if max_time is not None and steps.broadcast_stop(elapsed() >= max_time, info, dev):
                    stop_reason = "max_time"
                    break
            bar.close()
            distributed.sync_buffers(model, info)
            if info.enabled:  # the epoch's loss over all ranks' batches
                totals = torch.tensor([pos.loss_sum, float(pos.loss_count)], dtype=torch.float64)
                totals = distributed.all_reduce_sum(totals.to(dev), info).cpu()
                pos.loss_sum, pos.loss_count = float(totals[0]), int(totals[1])
            record = steps.end_epoch(pos, steps.current_lr(optimizer), history)
            if val_data is not None:
                record.update(
                    steps.validate(
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
            steps.log_epoch(record)
            pos.epoch, pos.batch = pos.epoch + 1, 0
            pos.loss_sum, pos.loss_count, pos.images, pos.train_seconds = 0.0, 0, 0, 0.0
            save("last")
            for callback in callbacks:
                hook = getattr(callback, "on_epoch_end", None)
                if hook is not None and hook(pos.epoch, record, history):
                    stop_reason = "callback"
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()  # else the message below lands at the end of the bar's line
        saving = ckpt_dir is not None and info.is_main
        logger.warning("interrupted at step %d%s", pos.step,
                       "; saving an 'interrupted' checkpoint" if saving else "")  # fmt: skip
        save("interrupted")
        # A notebook goes on with this model (save_pretrained, segment): its config must
        # describe the data and normalisation its weights were trained on, as after a
        # finished run, or a fine-tuned model would segment with the old mean/std.
        _finish(model, best_state, meta, history)
        raise

    history.stop_reason = stop_reason
    history.steps, history.seconds = pos.step, elapsed()
    save("last")  # the last weights, not the best: a resume with more epochs continues them
    _finish(model, best_state, meta, history)
    return history


def _finish(
    model: UNet,
    best_state: dict[str, torch.Tensor] | None,
    meta: dict[str, Any],
    history: History,
) -> None:
    """Restore the best validated weights and record the data and their metrics in the config."""
    if best_state is not None:
        model.load_state_dict(best_state)
        history.restored_best = True
        logger.info("restored the best weights: epoch %s, val mIoU %.4f",
                    history.best_epoch, history.best_mean_iou or math.nan)  # fmt: skip
    steps.record_in_config(model, meta, history)
