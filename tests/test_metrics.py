import math

import numpy as np
import pytest
import torch

from unetseg import InputError
from unetseg.metrics import confusion_matrix, scores_from_confusion


def test_confusion_counts_and_skips_ignored_pixels() -> None:
    target = torch.tensor([[0, 0, 1], [1, 255, 2]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 0]])
    matrix = confusion_matrix(pred, target, 3, ignore_index=255)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(matrix.numpy(), expected)


def test_scores_match_hand_computed_values() -> None:
    matrix = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    scores = scores_from_confusion(matrix)
    assert scores.iou[0] == pytest.approx(1 / 3)
    assert scores.iou[1] == pytest.approx(2 / 3)
    assert scores.iou[2] == 0.0
    assert scores.dice[1] == pytest.approx(4 / 5)
    assert scores.mean_iou == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert scores.pixel_accuracy == pytest.approx(3 / 5)


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    scores = scores_from_confusion(np.array([[3, 0], [0, 0]]))
    assert math.isnan(scores.iou[1])
    assert scores.mean_iou == 1.0
    named = scores.as_dict(["bg", "fg"])
    assert named["iou/bg"] == 1.0 and "dice/fg" in named


def test_shape_mismatch_is_an_input_error() -> None:
    # The library's own type, as every error a user can cause; still a ValueError.
    with pytest.raises(InputError, match="differ in shape"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 3), 2)
