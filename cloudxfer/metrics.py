"""OA / AA / Kappa on all test tiles and on cloudy and clear subsets, plus their output files.

OA is micro accuracy, AA the mean per-class recall, Kappa Cohen's kappa (METHOD.md). All are
torchmetrics states, so they sync across DDP ranks. Subsets follow the paper's Fig. 7: a tile is
*cloudy* when its cloud fraction exceeds ``cloudy_threshold`` and *clear* otherwise; tiles with an
unknown (NaN) cloud fraction count only in the overall figures.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection, SumMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCohenKappa,
    MulticlassStatScores,
)

from datamodules.runfiles import atomic_open, write_json

SUBSETS: tuple[str, ...] = ("", "_cloudy", "_clear")
PREDICTION_COLUMNS: tuple[str, ...] = (
    "id",
    "label",
    "pred",
    "label_name",
    "pred_name",
    "confidence",
    "cloud_fraction",
)

__all__ = [
    "AverageAccuracy",
    "PREDICTION_COLUMNS",
    "SceneMetrics",
    "write_metrics_json",
    "write_predictions_csv",
]


class AverageAccuracy(MulticlassStatScores):
    """Mean per-class recall over the classes present in the targets (the paper's AA).

    Hand-written on torchmetrics' stat scores because ``MulticlassAccuracy(average="macro")``
    counts a class that is predicted but absent from the targets as recall 0, which lowers AA on
    subsets (cloudy/clear) where some classes do not occur.
    """

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, average=None, **kwargs)

    def compute(self) -> Tensor:
        """Return the mean recall of classes with at least one target sample."""
        tp, _fp, _tn, fn = self._final_state()
        support = tp + fn
        present = support > 0
        if not bool(present.any()):
            return torch.tensor(float("nan"), device=tp.device)
        return (tp[present].float() / support[present].float()).mean()


def _collection(num_classes: int, postfix: str) -> MetricCollection:
    return MetricCollection(
        {
            "oa": MulticlassAccuracy(num_classes, average="micro"),
            "aa": AverageAccuracy(num_classes),
            "kappa": MulticlassCohenKappa(num_classes),
        },
        postfix=postfix,
        # Compute groups are formed from the first update; a DDP rank that never saw a cloudy
        # tile would form other groups and issue other collectives than its peers.
        compute_groups=False,
    )


class SceneMetrics(nn.Module):
    """OA/AA/Kappa for all tiles and for the cloudy and clear subsets, with tile counts.

    Args:
        num_classes: number of target classes.
        cloudy_threshold: a tile is cloudy when ``cloud_fraction > cloudy_threshold``.

    """

    def __init__(self, num_classes: int, cloudy_threshold: float = 0.0) -> None:
        super().__init__()
        self.cloudy_threshold = cloudy_threshold
        self.collections = nn.ModuleDict(
            {name or "all": _collection(num_classes, name) for name in SUBSETS}
        )
        self.counts = nn.ModuleDict({name or "all": SumMetric() for name in SUBSETS})

    def update(self, preds: Tensor, target: Tensor, cloud_fraction: Tensor) -> None:
        """Add a batch of predicted class indices, targets and cloud fractions."""
        labelled = target >= 0  # tiles without a label (the unlabelled pool) are not scored
        cloudy = (cloud_fraction > self.cloudy_threshold) & labelled
        clear = (cloud_fraction <= self.cloudy_threshold) & labelled  # NaN is neither
        everything = labelled
        for key, mask in (("all", everything), ("_cloudy", cloudy), ("_clear", clear)):
            n = int(mask.sum())
            self._count(key).update(torch.tensor(float(n), device=preds.device))
            if n:
                self._collection(key).update(preds[mask], target[mask])

    def compute(self) -> dict[str, float]:
        """Return ``oa, aa, kappa`` (+ ``_cloudy``/``_clear``) and ``n, n_cloudy, n_clear``."""
        out: dict[str, float] = {}
        for key in self.collections:
            collection = self._collection(key)
            postfix = "" if key == "all" else key
            counter = self._count(key)
            # no batch seen (a stage that classifies nothing on held-out tiles): 0 tiles,
            # without torchmetrics' compute-before-update warning
            count = float(counter.compute()) if counter.update_called else 0.0
            out[f"n{postfix}"] = count
            if count > 0:
                out.update({name: float(v) for name, v in collection.compute().items()})
            else:  # nothing to score (e.g. no cloudy tiles): report NaN, not a misleading 0
                out.update({f"{name}{postfix}": math.nan for name in ("oa", "aa", "kappa")})
        return out

    def reset(self) -> None:
        """Clear all states."""
        for key in self.collections:
            self._collection(key).reset()
            self._count(key).reset()

    def _collection(self, key: str) -> MetricCollection:
        return cast(MetricCollection, self.collections[key])

    def _count(self, key: str) -> SumMetric:
        return cast(SumMetric, self.counts[key])


def write_metrics_json(path: str | Path, metrics: Mapping[str, float], **extra: Any) -> Path:
    """Write metrics (NaN as null) and extra fields to ``path`` as pretty JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()
    }
    for key in ("n", "n_cloudy", "n_clear", "n_restored", "n_translated"):
        if isinstance(payload.get(key), float):
            payload[key] = int(payload[key])
    payload.update(extra)
    write_json(path, payload)
    return path


def write_predictions_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write one row per tile with :data:`PREDICTION_COLUMNS`, sorted by id, duplicates dropped.

    Distributed samplers pad the last batch with repeated tiles; dropping repeated ids keeps one
    row per tile.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unique: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        unique.setdefault(str(row["id"]), row)
    with atomic_open(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(PREDICTION_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for key in sorted(unique):
            writer.writerow(unique[key])
    return path
