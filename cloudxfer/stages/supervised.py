"""Baseline SL: a classifier trained from scratch on the labelled target tiles alone.

The paper's "SL" row: plain supervised learning on the 20 labelled Opt & SAR pairs per class,
no source model and no unlabelled tiles. The inputs are configurable, so the same module is a
single-modality from-scratch reference too.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from cloudxfer.losses import label_loss
from cloudxfer.models import LateFusionClassifier, SceneClassifier, modality_of
from cloudxfer.stages.base import StageModule, default_backbone

__all__ = ["SupervisedClassification"]


class SupervisedClassification(StageModule):
    """Cross-entropy on the data set's labels of the stage's training tiles, from scratch.

    Args:
        inputs: sample keys the network reads (``image_opt``, ``image_sar`` or both).
        backbone: torchvision model name (the profile's target backbone).
        fusion: ``early`` (stacked channels, one network) or ``late`` (one encoder per input).
        label_smoothing: cross-entropy label smoothing.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "supervised"

    def __init__(
        self,
        inputs: list[str] | None = None,
        backbone: str | None = None,
        fusion: Literal["early", "late"] = "early",
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "target")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        keys = list(inputs or ["image_opt", "image_sar"])
        model_cls = SceneClassifier if fusion == "early" or len(keys) == 1 else LateFusionClassifier
        self.model = model_cls(backbone, keys, len(self.class_names))

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, modality_of(
            list(init_args.get("inputs") or ["image_opt", "image_sar"])
        )

    def compute_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy against the ground-truth label, and the batch accuracy."""
        loss, accuracy = label_loss(self(batch), batch["label"], self.hparams["label_smoothing"])
        return loss, {"loss/supervised": loss.detach(), "train/acc": accuracy}
