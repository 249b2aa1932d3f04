"""What a stage records about its own training: epoch means, convergence, pseudo-label quality.

These figures explain a result (why F2 ends below its teachers, whether a stage had stopped
learning); none of them is ever used for training, filtering or any choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "CONVERGENCE_TOLERANCE",
    "TRAINING_FILENAME",
    "CONVERGENCE_WINDOW",
    "EpochMeans",
    "convergence",
    "teacher_diagnostics",
]

TRAINING_FILENAME = "training.json"
"""The training record each fit writes into its run folder."""
CONVERGENCE_WINDOW = 0.2
"""Share of the epochs (at least 2) over which the held-out loss must have flattened."""
CONVERGENCE_TOLERANCE = 0.02
"""Converged: the last window's mean held-out loss is less than this below the window before."""


class EpochMeans:
    """Sample-weighted means of scalar figures over one epoch (reduced over DDP ranks)."""

    def __init__(self) -> None:
        # Sums stay tensors on their device until the epoch ends: no host sync per step.
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, values: Mapping[str, Tensor | float], n: int) -> None:
        """Add the batch means ``values`` of a batch of ``n`` samples."""
        for key, value in values.items():
            term = torch.as_tensor(value).detach().double() * n
            self.sums[key] = self.sums[key] + term if key in self.sums else term
        self.count += n

    def compute(self, reduce: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        """Return the means (``reduce`` sums a tensor over ranks) and start a new epoch."""
        keys = sorted(self.sums)
        parts = [self.sums[k].cpu().reshape(()) for k in keys]
        totals = torch.stack([*parts, torch.tensor(float(self.count), dtype=torch.float64)])
        if reduce is not None:
            totals = reduce(totals)
        count = float(totals[-1])
        self.sums, self.count = {}, 0
        if count == 0:
            return {}
        return {key: float(totals[i]) / count for i, key in enumerate(keys)}


def convergence(
    curve: Sequence[float],
    window: float = CONVERGENCE_WINDOW,
    tolerance: float = CONVERGENCE_TOLERANCE,
) -> dict[str, Any]:
    """Whether a held-out loss curve (one value per epoch) has flattened.

    The criterion: with ``k = max(2, ceil(window * epochs))``, the mean loss of the last ``k``
    epochs is less than ``tolerance`` (relative) below the mean of the ``k`` epochs before
    them. Means over windows, not single epochs, because a held-out set of a few dozen tiles
    makes one epoch's loss noisy. A loss that rises has stopped improving too (it is past its
    best, which the record shows).

    Returns:
        ``met``, ``epochs``, ``window_epochs``, ``relative_drop`` (None when there are fewer
        than ``2 k`` epochs) and the criterion in words.

    """
    values = [float(v) for v in curve if v is not None and math.isfinite(float(v))]
    k = max(2, math.ceil(window * len(values)))
    text = (
        f"mean held-out loss of the last {100 * window:g} % of the epochs (at least 2) less "
        f"than {100 * tolerance:g} % below the mean of as many epochs before them"
    )
    record: dict[str, Any] = {
        "criterion": text,
        "epochs": len(values),
        "window_epochs": k,
        "relative_drop": None,
        "met": False,
    }
    if len(values) < 2 * k:
        return record
    before = sum(values[-2 * k : -k]) / k
    last = sum(values[-k:]) / k
    drop = (before - last) / max(abs(before), 1e-12)
    record.update(relative_drop=round(drop, 6), met=drop < tolerance)
    return record


def teacher_diagnostics(
    logits: Mapping[str, Tensor],
    labels: Tensor,
    cloud_fraction: Tensor,
    cloudy_threshold: float = 0.0,
) -> dict[str, Any]:
    """Pseudo-label quality of each teacher on a stage's training tiles, and their agreement.

    Args:
        logits: Teacher name -> (N, C) logits over the tiles.
        labels: (N,) labels the data set holds (-1: none).
        cloud_fraction: (N,) cloud fraction of each tile's optical image (NaN: unknown).
        cloudy_threshold: A tile is cloudy when its cloud fraction exceeds this.

    Returns:
        ``teacher_oa`` (overall / cloudy / clear, in [0, 1], None where no tile qualifies),
        ``teacher_agreement`` between every pair of teachers, and the tile counts.

    """
    known = labels >= 0
    cloudy = cloud_fraction > cloudy_threshold
    clear = cloud_fraction <= cloudy_threshold
    groups = {"all": known, "cloudy": known & cloudy, "clear": known & clear}
    preds = {name: value.argmax(1) for name, value in logits.items()}

    def share(hit: Tensor, where: Tensor) -> float | None:
        n = int(where.sum())
        return round(float(hit[where].float().mean()), 6) if n else None

    return {
        "teacher_oa": {
            name: {group: share(pred == labels, where) for group, where in groups.items()}
            for name, pred in sorted(preds.items())
        },
        "teacher_agreement": {
            f"{a}~{b}": share(preds[a] == preds[b], torch.ones_like(known))
            for a, b in combinations(sorted(preds), 2)
        },
        "tiles": {group: int(where.sum()) for group, where in groups.items()},
    }
