"""Distillation losses and the pseudo-label filter used by stages F1 and F2.

The method distils with ``- sum_i Y_i log Q_i``, where ``Y`` is a teacher's (pseudo-)label and
``Q`` the student's softmax. Whether ``Y`` is hard (one-hot argmax) or soft (tempered softmax)
is not published, so both are offered; soft targets follow Hinton et al. (student and teacher at
temperature T, loss scaled by T^2 so gradients keep their size).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

TargetKind = Literal["hard", "soft"]
FilterCriterion = Literal["none", "max_prob", "entropy", "margin"]

__all__ = [
    "FilterCriterion",
    "TargetKind",
    "confidence_mask",
    "distillation_loss",
    "teacher_targets",
]


def teacher_targets(teacher_logits: Tensor, kind: TargetKind, temperature: float = 1.0) -> Tensor:
    """Turn teacher logits into target distributions of shape (B, M), without gradient.

    Args:
        teacher_logits: teacher outputs, shape (B, M).
        kind: ``hard`` for one-hot argmax targets, ``soft`` for ``softmax(logits / T)``.
        temperature: softening temperature T (soft targets only), > 0.

    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = teacher_logits.detach().float()
    if kind == "hard":
        return F.one_hot(logits.argmax(dim=1), logits.shape[1]).float()
    if kind == "soft":
        return torch.softmax(logits / temperature, dim=1)
    raise ValueError(f"unknown target kind {kind!r}; expected 'hard' or 'soft'")


def distillation_loss(student_logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """Per-sample cross-entropy ``- sum_i Y_i log Q_i`` of student logits against targets.

    Args:
        student_logits: student outputs, shape (B, M).
        targets: target distributions from :func:`teacher_targets`, shape (B, M).
        temperature: temperature applied to the student (use the teacher's for soft targets);
            the loss is multiplied by T^2.

    Returns:
        Loss per sample, shape (B,). Callers reduce it (mean, or weighted for per-sample IRM).

    """
    if student_logits.shape != targets.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and targets "
            f"{tuple(targets.shape)} differ in shape (class count mismatch?)"
        )
    log_q = F.log_softmax(student_logits.float() / temperature, dim=1)
    return -(targets * log_q).sum(dim=1) * (temperature**2)


def confidence_mask(teacher_logits: Tensor, criterion: FilterCriterion, threshold: float) -> Tensor:
    """Boolean mask (B,) of samples whose teacher prediction is certain enough to learn from.

    Criteria: ``max_prob`` keeps softmax max >= threshold; ``margin`` keeps top-1 minus top-2
    probability >= threshold; ``entropy`` keeps normalised entropy (in [0, 1]) <= threshold;
    ``none`` keeps everything.
    """
    probs = torch.softmax(teacher_logits.detach().float(), dim=1)
    if criterion == "none":
        return torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
    if criterion == "max_prob":
        return probs.amax(dim=1) >= threshold
    if criterion == "margin":
        top2 = probs.topk(min(2, probs.shape[1]), dim=1).values
        margin = top2[:, 0] - (top2[:, 1] if top2.shape[1] > 1 else 0.0)
        return margin >= threshold
    if criterion == "entropy":
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
        return entropy / math.log(probs.shape[1]) <= threshold
    raise ValueError(
        f"unknown filter criterion {criterion!r}; expected none, max_prob, margin or entropy"
    )


def label_loss(
    logits: Tensor, labels: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Cross-entropy against ground-truth labels and the batch accuracy (no gradient)."""
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    return loss, (logits.detach().argmax(1) == labels).float().mean()
