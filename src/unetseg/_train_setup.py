"""What ``fit()`` settles before its loop: data, precision and the learning-rate schedule.

``check_arguments`` and ``check_model`` refuse what cannot train before anything is built;
``apply_ignore_index`` reads ``fit(ignore_index=...)``'s value as void in data sets built
without one; ``resolve_data`` splits off validation data and adds the default augmentation;
``check_compatible`` and ``check_same_mapping`` refuse data that disagrees with the model
or with itself, before any step runs; ``amp_dtype`` picks mixed precision per device;
``lr_at`` is the schedule, a function of how far the run has got.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, cast

import torch
from torch.utils.data import ConcatDataset, Subset, random_split

from ._utils import autocast_dtype, is_integer, is_number, logger
from .augment import Augment
from .errors import DatasetError, ImageError, TrainingError
from .imaging import to_unit_range
from .masks import color_hex
from .model import UNet

__all__ = [
    "MAPPING_FIELDS",
    "MIN_LR_RATIO",
    "amp_dtype",
    "apply_ignore_index",
    "as_pair",
    "check_compatible",
    "check_arguments",
    "check_model",
    "check_same_mapping",
    "collate",
    "is_keyed",
    "lr_at",
    "resolve_data",
    "trained_flips",
]

MIN_LR_RATIO = 0.01  # cosine decays to this fraction of lr
#: The config fields that decide which class a mask value (or colour) becomes.
MAPPING_FIELDS = ("mask_encoding", "mask_values", "class_colors", "num_classes")


# --------------------------------------------------------------------------- arguments


def check_arguments(
    *,
    epochs: Any,
    max_time: Any,
    batch_size: Any,
    lr: Any,
    weight_decay: Any,
    warmup: Any,
    grad_clip: Any,
    patch_size: Any,
    seed: Any,
    num_workers: Any,
    ignore_index: Any,
    callbacks: Any,
    on_nonfinite: Any,
) -> None:
    """Refuse ``fit()`` arguments of the wrong type or out of range before anything is built.

    Left to torch, some fail deep inside with a bare ``TypeError``/``ValueError`` (a
    negative ``seed``, ``lr="1e-3"``) and some train silently wrong: a NaN ``lr`` shows as a
    NaN loss blamed on the data, a negative ``grad_clip`` flips every gradient's sign,
    ``warmup`` past 1 never reaches the peak rate, a bare function as a callback is never
    called. numpy numbers are accepted.

    Raises:
        TrainingError: naming the argument, its value and what it must be.
    """
    integer = is_integer

    def number(value: object) -> bool:
        return is_number(value) and math.isfinite(float(value))

    def at_least(value: Any, low: float) -> bool:
        return number(value) and value >= low

    checks = (
        ("epochs", epochs, epochs is None or (integer(epochs) and at_least(epochs, 1)),
         "a positive integer or None"),
        ("max_time", max_time, max_time is None or (number(max_time) and max_time > 0),
         "a positive number of seconds or None"),
        ("batch_size", batch_size, integer(batch_size) and at_least(batch_size, 1),
         "an integer >= 1"),
        ("lr", lr, number(lr) and lr > 0, "a positive number"),
        ("weight_decay", weight_decay, at_least(weight_decay, 0), "a number >= 0"),
        ("warmup", warmup, at_least(warmup, 0) and warmup < 1, "a fraction of the run in [0, 1)"),
        ("grad_clip", grad_clip, grad_clip is None or (number(grad_clip) and grad_clip > 0),
         "a positive max norm, or None"),
        ("patch_size", patch_size, integer(patch_size) and at_least(patch_size, 1),
         "a positive integer"),
        # numpy's SeedSequence takes no negative seed, torch none of 2**63 or more.
        ("seed", seed, integer(seed) and at_least(seed, 0) and seed < 2**63,
         "an integer in [0, 2**63)"),
        ("num_workers", num_workers, integer(num_workers) and at_least(num_workers, 0),
         "an integer >= 0"),
        ("ignore_index", ignore_index, ignore_index is None or integer(ignore_index),
         "an integer or None"),
        ("on_nonfinite", on_nonfinite, on_nonfinite in ("raise", "skip"), "'raise' or 'skip'"),
        ("callbacks", callbacks, isinstance(callbacks, (list, tuple)),
         "a list (pass [callback])"),
    )  # fmt: skip
    for name, value, ok, expected in checks:
        if not ok:
            raise TrainingError(f"{name} must be {expected}, got {value!r}")
    for callback in cast("list[Any]", callbacks):  # a bare function would be skipped silently
        if not any(hasattr(callback, hook) for hook in ("on_batch_end", "on_epoch_end")):
            raise TrainingError(
                f"callback {callback!r} has neither on_batch_end(step, loss) nor "
                "on_epoch_end(epoch, record, history); give it one of them"
            )


def check_model(model: object) -> None:
    """Refuse a model ``fit()`` cannot train, before torch fails on it with a raw error.

    Raises:
        TrainingError: not a ``UNet``, weights other than float32, or every one frozen.
    """
    if not isinstance(model, UNet):
        raise TrainingError(f"fit() trains a unetseg UNet, got {type(model).__name__}")
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    if dtypes != ["float32"]:  # float32 images and autocast meet other weights in a raw error
        raise TrainingError(
            f"fit() trains float32 weights (amp= picks mixed precision) but the model's are "
            f"{'/'.join(dtypes)}; call model.float() first"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError(
            "every parameter of the model is frozen (requires_grad=False): nothing to "
            "train; unfreeze some, e.g. model.requires_grad_(True)"
        )


# --------------------------------------------------------------------------- precision


def amp_dtype(amp: str | bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``fit(amp=...)`` on ``device``; None for float32.

    Raises:
        TrainingError: ``amp`` is not one of the accepted values.
    """
    return autocast_dtype(amp, device, error=TrainingError)


# --------------------------------------------------------------------------- schedule


def lr_at(progress: float, lr: float, warmup: float) -> float:
    """Linear warmup from lr/10, then cosine decay to ``MIN_LR_RATIO * lr`` at progress 1."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup:
        return lr * (0.1 + 0.9 * progress / warmup)
    t = (progress - warmup) / max(1.0 - warmup, 1e-12)
    return lr * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * t)))


# --------------------------------------------------------------------------- data


def is_keyed(ds: object) -> bool:
    """A ``SegmentationDataset``-like object: takes ``(index, seed)`` keys, carries metadata."""
    return hasattr(ds, "with_augment") and hasattr(ds, "config_fields")


def wraps_keyed(ds: object) -> bool:
    """A torch ``Subset``/``ConcatDataset`` (at any depth) over a ``SegmentationDataset``."""
    if isinstance(ds, Subset):
        return is_keyed(ds.dataset) or wraps_keyed(ds.dataset)
    if isinstance(ds, ConcatDataset):
        return any(is_keyed(d) or wraps_keyed(d) for d in ds.datasets)
    return False


def as_pair(item: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset item as (image (C, H, W) float, mask (H, W) int64).

    Raises:
        DatasetError: the item is not an (image, mask) pair of those shapes.
    """
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
    if image.shape[1:] != mask.shape:
        fix = (
            "images are (C, H, W): transpose (H, W, C) arrays with .transpose(2, 0, 1)"
            if image.shape[:2] == mask.shape
            else "give each image a mask of its own size"
        )
        raise DatasetError(
            f"{where}: the image has shape {tuple(image.shape)} but its mask "
            f"{tuple(mask.shape)}; {fix}"
        )
    if not image.is_floating_point():
        # Scaled by the dtype's range, as segment() scales images (prepare_image): uint8
        # trained as 0..255 would meet 0..1 at inference.
        try:
            image = torch.from_numpy(to_unit_range(image.cpu().numpy()))
        except ImageError as err:
            raise DatasetError(f"{where}: {err}") from None
    if mask.is_floating_point() and not bool((mask == mask.round()).all()):
        # .long() would truncate them: 0.5 becomes class 0 without a word.
        raise DatasetError(
            f"{where}: the mask holds fractional values; masks are class indices "
            "(0, 1, ...), so round or threshold it first"
        )
    return image.float(), mask.long()


def collate(batch: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack items into (B, C, H, W) images and (B, H, W) masks; same-size items only."""
    pairs = [as_pair(item, "training data") for item in batch]
    shapes = {tuple(p[0].shape) for p in pairs} | {(-1, *p[1].shape) for p in pairs}
    if len({s[1:] for s in shapes}) > 1:
        raise DatasetError(
            f"images in a batch differ in size ({sorted(shapes)}); crop them to patches "
            "(SegmentationDataset does by default) or pass batch_size=1"
        )
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def apply_ignore_index(
    train_data: Any, val_data: Any, ignore_index: int | None, num_classes: int
) -> tuple[Any, Any]:
    """Read ``fit(ignore_index=k)``'s mask value k as void in data sets built without one.

    Otherwise k stays a class of a ``SegmentationDataset`` (index masks 0..10 with void 11
    make 12 classes) and the model built for the real classes (``num_classes``) is
    refused. A model built with k counted as a class keeps the data as read, the loss
    skipping label k. Data sets of plain pairs give labels, skipped as they are.

    Raises:
        TrainingError: the training data skips another value than ``ignore_index``.
        DatasetError: the masks cannot be read with that value as void.
    """
    if ignore_index is None or not hasattr(train_data, "with_ignore_index"):
        return train_data, val_data
    if train_data.ignore_index not in (None, ignore_index):
        raise TrainingError(
            f"fit() got ignore_index={ignore_index} but train_data was built with "
            f"ignore_index={train_data.ignore_index}; pass the same value, or leave fit()'s out"
        )
    if train_data.ignore_index is None:
        fields = train_data.config_fields()
        values = fields.get("mask_values")
        # Grey and binary masks renumber their values: 255 of 0/1/255 is class 2, which
        # the loss would not skip, so such a value must be read as void instead.
        as_label = values is None or ignore_index not in values
        as_label = as_label or values.index(ignore_index) == ignore_index
        if train_data.num_classes == num_classes and as_label:
            return train_data, val_data  # the model counts k as a class; the loss skips it
        if fields.get("mask_encoding") == "color":
            # A colour is void only through a color_map; fit() cannot say which one.
            colors = fields.get("class_colors") or ()
            named = (
                f" (class {ignore_index} is {color_hex(colors[ignore_index])})"
                if 0 <= ignore_index < len(colors)
                else ""
            )
            raise TrainingError(
                f"fit() got ignore_index={ignore_index} for colour masks read without one"
                f"{named}; build the data set with color_map={{void colour: 255, ...}} and "
                "ignore_index=255, and leave fit()'s out"
            )
        logger.info("reading mask value %d as void pixels (fit(ignore_index=...))", ignore_index)
        train_data = train_data.with_ignore_index(ignore_index)
    if hasattr(val_data, "with_ignore_index") and val_data.ignore_index is None:
        val_data = val_data.with_ignore_index(ignore_index, like=train_data)
    return train_data, val_data


def resolve_data(
    train_data: Any,
    val_data: Any,
    seed: int,
    patch_size: int,
    default_augment: Callable[[int], Any],
) -> tuple[Any, Any | None]:
    """Split a validation fraction off ``train_data``; augment a keyed, unaugmented one.

    Args:
        train_data: ``fit()``'s ``train_data``.
        val_data: ``fit()``'s ``val_data``: a dataset, a fraction or None.
        seed: seeds the split.
        patch_size: passed to ``default_augment``.
        default_augment: ``patch_size`` -> the augmentation a keyed dataset gets when
            it has none.

    Returns:
        (training data, validation data or None).

    Raises:
        TrainingError: a fraction outside (0, 1), or too few items to split.
        DatasetError: empty data, or a torch ``Subset``/``ConcatDataset`` of a
            ``SegmentationDataset`` as training or validation data.
    """
    if wraps_keyed(train_data):
        # Wrapped, it is only (image, mask) pairs: fit() would train on whole images with
        # no patches or augmentation, and the model's config would get neither classes nor
        # mean/std although the items are normalised, so segment() would feed the trained
        # model unnormalised images.
        raise DatasetError(
            f"train_data is a torch {type(train_data).__name__} of a SegmentationDataset, "
            "which hides its patches, augmentation and metadata from fit(); pass the "
            "SegmentationDataset itself (data.split(val_fraction) for a validation set), or "
            "build one from just the images you want to train on"
        )
    if wraps_keyed(val_data):
        # Wrapped, its mask mapping escapes check_same_mapping and fit(ignore_index=...)'s
        # re-reading (apply_ignore_index), so it could score other classes than it trains;
        # refused like train_data rather than unwrapped, since fit() cannot rebuild the
        # wrapper around re-read data.
        raise DatasetError(
            f"val_data is a torch {type(val_data).__name__} of a SegmentationDataset, "
            "which hides its mask mapping from fit(); pass a SegmentationDataset: "
            "data.split(val_fraction) (or fit(val_data=0.2)) for a validation set split off "
            "the training data, or SegmentationDataset(val_images, val_masks, "
            "like=train_data) built from just the images you want to validate on"
        )
    # Any number is meant as a fraction (np.float32, or 0 and 1 typed as ints), not a dataset.
    if isinstance(val_data, numbers.Number):
        if not (is_number(val_data) and 0.0 < float(val_data) < 1.0):
            raise TrainingError(
                f"val_data as a fraction must be in (0, 1), got {val_data!r}; pass None "
                "for no validation"
            )
        val_data = float(val_data)
        if len(train_data) < 2:
            raise TrainingError(
                f"train_data has {len(train_data)} item(s), too few to split off val_data="
                f"{val_data} for validation; pass val_data=None to train without validation "
                "(unetseg train: --val-fraction 0), or add images"
            )
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
    if is_keyed(train_data) and train_data.augment is None:
        train_data = train_data.with_augment(default_augment(patch_size))
    if len(train_data) == 0:
        raise DatasetError("train_data is empty")
    if val_data is not None and len(val_data) == 0:
        raise DatasetError("val_data is empty")
    return train_data, val_data


def trained_flips(train_data: Any) -> tuple[str, ...] | None:
    """The flips the training augmentation draws, for the config's ``tta_flips``.

    Vertical counts when drawn directly, or when 90-degree turns combine with horizontal
    flips (a half turn after a mirror is a vertical flip). None when the augmentation is
    not an ``Augment`` (a user's callable), so its symmetries are unknown.
    """
    augment = getattr(train_data, "augment", None)
    if not isinstance(augment, Augment):
        return None
    flips: tuple[str, ...] = ("horizontal",) if augment.flip else ()
    if augment.vflip or (augment.rotate90 and augment.flip):
        flips += ("vertical",)
    return flips


def check_compatible(
    model: UNet, train_data: Any, seed: int, val_data: Any = None
) -> dict[str, Any]:
    """Fail before training when data and model disagree; return the dataset metadata.

    Raises:
        TrainingError: channel or class counts differ between the data and the model.
    """
    config = model.config
    meta: dict[str, Any] = dict(train_data.config_fields()) if is_keyed(train_data) else {}
    _refuse_renumbered_indices(meta, int(config.num_classes))
    for name in ("in_channels", "num_classes"):
        if name in meta and meta[name] != getattr(config, name):
            raise TrainingError(
                f"the data has {name}={meta[name]} but the model has {name}="
                f"{getattr(config, name)}; build the model with UNet(in_channels="
                f"{meta.get('in_channels', config.in_channels)}, num_classes="
                f"{meta.get('num_classes', config.num_classes)})"
            )
    firsts = [("train_data", train_data[(0, seed)] if is_keyed(train_data) else train_data[0])]
    if val_data is not None:  # else a mismatch would show only after a training epoch
        firsts.append(("val_data", val_data[0]))
    for name, first in firsts:
        image, _ = as_pair(first, f"{name}[0]")
        if image.shape[0] != config.in_channels:
            raise TrainingError(
                f"{name}'s images have {image.shape[0]} channels but the model takes "
                f"in_channels={config.in_channels}; build the model with "
                f"UNet(in_channels={image.shape[0]}, ...) or convert the images"
            )
    if "image_mean" not in meta and config.image_mean is not None:
        # Plain pairs train as given, but segment() will normalise with the config's
        # statistics (from an earlier fit): the two would disagree without a word.
        logger.warning(
            "train_data gives (image, mask) pairs as they are, but segment() normalises "
            "images with the model's image_mean=%s, image_std=%s; normalise the pairs the "
            "same way (or train a SegmentationDataset built with like=model)",
            list(config.image_mean), list(config.image_std or ()),
        )  # fmt: skip
    return meta


def _refuse_renumbered_indices(meta: dict[str, Any], num_classes: int) -> None:
    """Name the fix when class-index masks that lack some classes were read as grey levels.

    Index masks 0..10 of which a data set holds only 0, 1, 3, 5 and 8 look like five grey
    levels and are renumbered 0..4; "build the model with num_classes=5" would then train
    a model whose class 2 is mask value 3.
    """
    values = meta.get("mask_values")
    if meta.get("mask_encoding") != "grey" or not values or meta.get("num_classes") == num_classes:
        return
    if max(values) < num_classes:
        void = meta.get("ignore_index")
        also = f" and ignore_index={void}" if void is not None else ""
        raise TrainingError(
            f"the masks hold the values {list(values)}, read as {len(values)} grey levels "
            f"(classes 0..{len(values) - 1}), but the model has num_classes={num_classes}; if "
            f"the values are class indices (some classes absent from these masks), build the "
            f"data set with class_names=[...] ({num_classes} names){also} so that value v is class "
            f"v, or build the model with UNet(num_classes={len(values)}) to train the grey levels"
        )


def check_same_mapping(train_data: Any, val_data: Any) -> None:
    """Refuse validation data whose masks map to classes unlike the training data's.

    A validation set built on its own rediscovers its encoding: one that lacks a class, or
    holds grey levels or colours in another order, numbers its classes differently, and
    its scores would silently compare other classes.

    Raises:
        DatasetError: both datasets have ``config_fields()`` and their mappings differ.
    """
    if not (hasattr(train_data, "config_fields") and hasattr(val_data, "config_fields")):
        return
    train_fields, val_fields = train_data.config_fields(), val_data.config_fields()
    train_map = {name: train_fields.get(name) for name in MAPPING_FIELDS}
    val_map = {name: val_fields.get(name) for name in MAPPING_FIELDS}
    if train_map != val_map:

        def shown(mapping: dict[str, Any]) -> str:
            return ", ".join(f"{name}={value!r}" for name, value in mapping.items())

        raise DatasetError(
            f"val_data maps mask values to classes differently from train_data "
            f"(train_data: {shown(train_map)}; val_data: {shown(val_map)}); build the "
            "validation set with SegmentationDataset(val_images, val_masks, like=train_data)"
        )
