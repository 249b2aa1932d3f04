import math

import pytest
import torch

from cloudxfer.losses import confidence_mask, distillation_loss, teacher_targets


def test_hard_targets_are_one_hot_argmax() -> None:
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 0.0, 0.0]])
    torch.testing.assert_close(
        teacher_targets(logits, "hard"), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    )


def test_soft_targets_follow_temperature() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    t = 2.0
    p = math.exp(1.0) / (math.exp(1.0) + 1.0)
    torch.testing.assert_close(teacher_targets(logits, "soft", t), torch.tensor([[p, 1 - p]]))
    with pytest.raises(ValueError, match="temperature"):
        teacher_targets(logits, "soft", 0.0)


def test_distillation_loss_by_hand() -> None:
    student = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    target = torch.tensor([[0.5, 0.5, 0.0]])
    expected = -(0.5 * math.log(0.7) + 0.5 * math.log(0.2))
    assert float(distillation_loss(student, target)) == pytest.approx(expected, rel=1e-5)
    # Hard targets reduce to the usual cross-entropy.
    hard = teacher_targets(torch.tensor([[0.0, 3.0, 0.0]]), "hard")
    assert float(distillation_loss(student, hard)) == pytest.approx(-math.log(0.2), rel=1e-5)


def test_distillation_loss_rejects_class_count_mismatch() -> None:
    with pytest.raises(ValueError, match="class count"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_confidence_filters() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.6, 0.4, 0.0]])
    logits = probs.clamp_min(1e-9).log()
    assert confidence_mask(logits, "max_prob", 0.5).tolist() == [True, False, True]
    assert confidence_mask(logits, "margin", 0.3).tolist() == [True, False, False]
    assert confidence_mask(logits, "none", 0.99).tolist() == [True, True, True]
    entropy_keep = confidence_mask(logits, "entropy", 0.5).tolist()
    assert entropy_keep[0] is True and entropy_keep[1] is False
    with pytest.raises(ValueError, match="criterion"):
        confidence_mask(logits, "bogus", 0.5)  # type: ignore[arg-type]
