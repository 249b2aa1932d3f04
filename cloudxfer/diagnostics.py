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

from cloudxfer.files import TRAINING_FILENAME

__all__ = [
    "TRAINING_FILENAME",
    "CONVERGENCE_PATIENCE",
    "FINISHED_LR_SHARE",
    "FLAT_TOLERANCE",
    "EpochMeans",
    "convergence",
    "teacher_diagnostics",
]

CONVERGENCE_PATIENCE = 5
"""Epochs of no new lowest held-out loss after which a plateau schedule's early stopping ends
a fit (profile ``patience`` overrides it)."""
FLAT_TOLERANCE = 0.02
"""Flattened: the held-out loss's relative change over the last tenth of the epochs."""
FINISHED_LR_SHARE = 0.2
"""Schedule finished: the handed-on epoch trained at most this share of the peak rate."""


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


def convergence(curve: Sequence[float], lr_share: float | None = None) -> dict[str, Any]:
    """Whether a fit can be judged: its schedule finished and its held-out loss flattened.

    A stage handed on at a high learning rate, or while its held-out loss still moved, proves
    nothing either way. Flattened: the mean held-out loss of the last ``window`` epochs (a
    tenth of them, at least 2) is within :data:`FLAT_TOLERANCE` of the ``window`` before.
    Finished: the handed-on epoch's learning rate is at most :data:`FINISHED_LR_SHARE` of
    its peak (``lr_share``; None: unknown, not finished).

    Returns:
        ``met``, ``flattened``, ``schedule_finished``, ``relative_change``, ``window``,
        ``lr_share``, ``epochs``, ``best_epoch`` (0-based; None without epochs),
        ``best_loss``, ``final_loss`` and the criterion in words.

    """
    values = [float(v) for v in curve if v is not None and math.isfinite(float(v))]
    window = max(2, math.ceil(len(values) / 10))
    text = (
        f"schedule finished (the handed-on epoch at <= {FINISHED_LR_SHARE:.0%} of the peak "
        f"learning rate) and held-out loss flattened (mean of the last tenth of the epochs, "
        f"at least 2, within {FLAT_TOLERANCE:.0%} of the tenth before)"
    )
    finished = lr_share is not None and lr_share <= FINISHED_LR_SHARE
    record: dict[str, Any] = {
        "criterion": text,
        "epochs": len(values),
        "window": window,
        "best_epoch": None,
        "best_loss": None,
        "final_loss": None,
        "relative_change": None,
        "lr_share": lr_share,
        "schedule_finished": finished,
        "flattened": False,
        "met": False,
    }
    if not values:
        return record
    best = min(range(len(values)), key=values.__getitem__)  # first of equal minima
    record.update(best_epoch=best, best_loss=round(values[best], 6), final_loss=values[-1])
    if len(values) >= 2 * window:
        last = sum(values[-window:]) / window
        before = sum(values[-2 * window : -window]) / window
        change = abs(last - before) / max(abs(before), 1e-12)
        record.update(relative_change=round(change, 6), flattened=change <= FLAT_TOLERANCE)
    record["met"] = bool(record["flattened"] and finished)
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
