from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unetseg import ConfigError
from unetseg.losses import CrossEntropyLoss, DiceCELoss, DiceLoss, make_loss


def _batch(k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(2, k, 8, 8, requires_grad=True), torch.randint(0, k, (2, 8, 8))


def test_ce_matches_torch_and_honours_weights() -> None:
    logits, target = _batch()
    assert torch.allclose(CrossEntropyLoss()(logits, target), F.cross_entropy(logits, target))
    weights = [1.0, 2.0, 0.5]
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weights))
    assert torch.allclose(CrossEntropyLoss(weights)(logits, target), expected)


@pytest.mark.parametrize("loss_cls", [CrossEntropyLoss, DiceLoss, DiceCELoss])
def test_ignored_pixels_do_not_count(loss_cls: type[torch.nn.Module]) -> None:
    logits, target = _batch()
    loss = loss_cls(ignore_index=255)
    marked = target.clone()
    marked[:, :4] = 255
    garbage = logits.detach().clone()
    garbage[:, :, :4] = torch.randn_like(garbage[:, :, :4]) * 100  # must not matter
    a, b = loss(logits.detach(), marked), loss(garbage, marked)
    assert torch.allclose(a, b)
    value = loss(logits, marked)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad[:, :, :4].abs().max() == 0


@pytest.mark.parametrize("loss_cls", [CrossEntropyLoss, DiceCELoss])
def test_a_batch_with_no_pixel_to_count_costs_no_cross_entropy(
    loss_cls: type[torch.nn.Module],
) -> None:
    # An unlabelled image (all void), or a patch of one zero-weight class: torch's mean is
    # 0 / 0, a NaN that fit() would report as divergence.
    logits, target = _batch()
    cases = [
        ({"ignore_index": 255}, torch.full_like(target, 255)),
        ({"class_weights": [0.0, 1.0, 1.0]}, torch.zeros_like(target)),
    ]
    for options, labels in cases:
        value = loss_cls(**options)(logits, labels)
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(grad).all()
        dice = DiceLoss(**options)(logits, labels) if loss_cls is DiceCELoss else 0.0
        assert torch.allclose(value, torch.as_tensor(dice))


def test_dice_is_zero_for_a_perfect_prediction_and_positive_otherwise() -> None:
    target = torch.randint(0, 3, (2, 16, 16))
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert DiceLoss()(perfect, target) < 1e-3
    assert DiceLoss()(-perfect, target) > 0.9
    weighted = DiceLoss(class_weights=[0.0, 1.0, 1.0])(perfect, target)
    assert weighted < 1e-3


def test_dice_ce_is_the_sum() -> None:
    logits, target = _batch()
    total = DiceCELoss()(logits, target)
    assert torch.allclose(total, CrossEntropyLoss()(logits, target) + DiceLoss()(logits, target))


def test_make_loss_names_callables_and_errors() -> None:
    assert isinstance(make_loss("ce"), CrossEntropyLoss)
    assert isinstance(make_loss("dice"), DiceLoss)
    assert isinstance(make_loss("dice_ce", ignore_index=255), DiceCELoss)

    def custom(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.mean()

    assert make_loss(custom) is custom
    with pytest.raises(ConfigError, match="dice_ce"):
        make_loss("focal")
    with pytest.raises(ConfigError, match="class_weights"):
        make_loss("ce", class_weights=[-1.0, 1.0])
    for not_numbers in ("ab", [None, 1.0], [[1.0], [1.0, 2.0]]):  # were torch's TypeErrors
        with pytest.raises(ConfigError, match="class_weights"):
            make_loss("dice_ce", class_weights=not_numbers)  # type: ignore[arg-type]


def _one_hot_dice(logits: torch.Tensor, target: torch.Tensor, ignore: int, smooth: float = 1.0):
    """The textbook batch soft Dice with a one-hot target, to pin the gather version to."""
    k = logits.shape[1]
    probs = logits.float().softmax(1)
    valid = (target != ignore).unsqueeze(1).float()
    one_hot = F.one_hot(torch.where(target == ignore, 0, target), k).permute(0, 3, 1, 2).float()
    probs, one_hot = probs * valid, one_hot * valid
    inter = (probs * one_hot).sum((0, 2, 3))
    dice = (2 * inter + smooth) / (probs.sum((0, 2, 3)) + one_hot.sum((0, 2, 3)) + smooth)
    return dice


@pytest.mark.parametrize("with_void", [False, True])
def test_dice_matches_the_one_hot_formula_in_value_and_gradient(with_void: bool) -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 11, 20, 24, requires_grad=True)
    target = torch.randint(0, 11, (3, 20, 24))
    target[target == 4] = 3  # a class absent from the batch: its Dice is 1 via smoothing
    if with_void:
        target[:, :5] = 255
    weights = torch.rand(11) + 0.1
    expected = 1 - (_one_hot_dice(logits, target, 255) * weights).sum() / weights.sum()
    (expected_grad,) = torch.autograd.grad(expected, logits)
    got = DiceLoss(class_weights=weights, ignore_index=255)(logits, target)
    (got_grad,) = torch.autograd.grad(got, logits)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got_grad, expected_grad, atol=1e-7)
