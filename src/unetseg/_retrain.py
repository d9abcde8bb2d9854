"""Training a model that was trained before: what its config keeps, and its frozen layers.

``fit()`` records the training data's metadata in ``model.config``. For a model that already
describes its data (a saved model trained further, or a second ``fit()`` in a notebook),
``carry_over`` decides what survives: the model's class names when the data maps masks the
same way but was read without names; and it warns when the data maps classes, or normalises
images, unlike what the model's weights learned.

``train_mode`` is ``model.train()`` for fine-tuning: BatchNorm layers whose weights the user
froze (``requires_grad=False``) stay in eval mode, so a frozen encoder stays frozen, its
running statistics included, as Keras does for ``trainable=False``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ._train_setup import MAPPING_FIELDS
from ._utils import logger
from .config import UNetConfig
from .mask_encoding import default_class_names

__all__ = ["STATS_TOLERANCE", "carry_over", "describe_frozen", "train_mode"]
#: Normalisation statistics further apart than this (a mean shift in units of the model's
#: std, or a relative change of std) are warned about. Subsets of one data set, measured
#: again, differ by a few percent, which the first BatchNorm absorbs; a brighter or darker
#: data set moves every input the weights knew.
STATS_TOLERANCE = 0.1


def carry_over(config: UNetConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """The data's metadata for ``model.config``, with what a trained model keeps.

    Args:
        config: the model's config before ``fit()``.
        meta: the training data's ``config_fields()`` (empty for plain pairs).

    Returns:
        ``meta``, with the model's class names when the data maps masks to classes as the
        model does but was read without names (``class_0``, ... would replace them).
    """
    if not meta:
        return meta  # plain pairs: check_compatible warns if the model normalises
    # The statistics outlive a new head (from_pretrained(num_classes=...) keeps them): the
    # kept layers learned them, whatever the classes.
    _check_stats(config, meta)
    if config.mask_encoding is None:
        return meta  # a new model, or a new head: no classes of its own to keep
    model_map = {name: getattr(config, name) for name in MAPPING_FIELDS}
    data_map = {name: meta.get(name) for name in MAPPING_FIELDS}
    if model_map != data_map:
        # A data set read on its own numbers the classes it finds: other colours or grey
        # levels move classes to other outputs of the trained head without a word.
        logger.warning(
            "train_data maps mask values to classes unlike the model was trained to (model: "
            "%s; train_data: %s): each output of the weights now learns train_data's class "
            "of that number, and model.config will describe train_data. To go on training "
            "the model's classes, build train_data with SegmentationDataset(images, masks, "
            "like=model)",
            _shown(model_map),
            _shown(data_map),
        )
        return meta
    merged = dict(meta)
    defaults = default_class_names(config.num_classes, config.mask_encoding)
    if config.class_names is not None and meta.get("class_names") in (None, defaults):
        merged["class_names"] = config.class_names
    return merged


def _check_stats(config: UNetConfig, meta: dict[str, Any]) -> None:
    old_mean, old_std = config.image_mean, config.image_std
    new_mean, new_std = meta.get("image_mean"), meta.get("image_std")
    if old_mean is None or old_std is None or new_mean is None or new_std is None:
        return
    shift = max(abs(n - o) / s for n, o, s in zip(new_mean, old_mean, old_std, strict=True))
    scale = max(abs(n / o - 1) for n, o in zip(new_std, old_std, strict=True))
    if max(shift, scale) <= STATS_TOLERANCE:
        return
    logger.warning(
        "train_data normalises images with mean %s, std %s, "
        "but the model's weights learned images normalised with mean %s, std %s: fit() "
        "trains with and records train_data's, which moves every input the weights knew. "
        "To keep the model's, build train_data with SegmentationDataset(images, masks, "
        "like=model) for the model's classes, or with mean=model.config.image_mean, "
        "std=model.config.image_std for new ones",
        _rounded(new_mean),
        _rounded(new_std),
        _rounded(old_mean),
        _rounded(old_std),
    )


def _shown(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in mapping.items())


def _rounded(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in values) + ")"


def _frozen_norms(model: nn.Module) -> list[nn.Module]:
    """BatchNorm layers with learnable weights, every one of them frozen."""
    return [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and module.affine
        and not any(p.requires_grad for p in module.parameters(recurse=False))
    ]


def train_mode(model: nn.Module) -> None:
    """``model.train()``, leaving BatchNorm layers with frozen weights in eval mode.

    In train mode they would go on updating their running statistics, so a "frozen" encoder
    would still change what it computes.
    """
    model.train()
    for module in _frozen_norms(model):
        module.eval()


def describe_frozen(model: nn.Module) -> None:
    """Log how many parameters ``fit()`` trains, when the user froze some."""
    params = list(model.parameters())
    frozen = sum(p.numel() for p in params if not p.requires_grad)
    if not frozen:
        return
    total = sum(p.numel() for p in params)
    norms = len(_frozen_norms(model))
    norms_too = f", as do the running statistics of their {norms} BatchNorm layer(s)"
    logger.info(
        "training %s of %s parameters: %s are frozen (requires_grad=False) and keep their %s",
        f"{total - frozen:,}",
        f"{total:,}",
        f"{frozen:,}",
        "values" + (norms_too if norms else ""),
    )
