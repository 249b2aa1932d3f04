"""Baseline TTL (SAR): transitive transfer from optical to SAR through an intermediate domain.

Tan et al., "Transitive Transfer Learning" (KDD 2015): when source and target share too little,
transfer through an intermediate domain that shares something with each. Here the source is
f_S (optical, the target classes), the target is SAR, and the intermediate domain is built from
the co-registered labelled pairs: blends ``(1 - a) * optical + a * SAR`` of the same scene,
whose SAR share ``a`` rises from 0 to 1 over ``bridge_epochs`` and then stays at SAR. Every
blend carries its pair's label. Scored on SAR alone. docs/baselines.md gives the reasoning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cloudxfer.losses import label_loss
from cloudxfer.stages.base import Batch, default_backbone
from cloudxfer.stages.source import SarFromSourceModel

__all__ = ["TransitiveTransfer", "sar_share"]


def sar_share(epoch: int, bridge_epochs: int) -> float:
    """SAR share of the intermediate domain at ``epoch``: 0 at the start, 1 from the end."""
    if bridge_epochs <= 0:
        return 1.0
    return min(1.0, epoch / bridge_epochs)


class TransitiveTransfer(SarFromSourceModel):
    """TTL: f_S's network trained on optical -> SAR blends of the labelled pairs, then on SAR.

    Args:
        init_from: f_S checkpoint (``source_finetune``) whose encoder and head start the run.
        backbone: torchvision model name; must match f_S's.
        bridge_epochs: epochs over which the inputs move from optical to SAR.
        label_smoothing: cross-entropy label smoothing.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "ttl"

    def __init__(
        self,
        init_from: str | None = None,
        backbone: str | None = None,
        bridge_epochs: int = 5,
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "source")
        if bridge_epochs < 0:
            raise ValueError(f"bridge_epochs must be >= 0, got {bridge_epochs}")
        super().__init__(init_from=init_from, backbone=backbone, **kwargs)
        self.save_hyperparameters()

    def share(self) -> float:
        """SAR share of this step's inputs: the bridge's in training, 1 (SAR) when scoring."""
        if not self.training:
            return 1.0
        return sar_share(self.current_epoch, int(self.hparams["bridge_epochs"]))

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy of the blended (held out: SAR) tiles against their pairs' labels."""
        share = self.share()
        blended = (1.0 - share) * batch["image_opt"] + share * batch["image_sar"]
        logits = self.model({"image_sar": blended})
        loss, accuracy = label_loss(logits, batch["label"], self.hparams["label_smoothing"])
        return loss, {
            "loss/supervised": loss.detach(),
            "ttl/sar_share": torch.tensor(share),
            "train/acc": accuracy,
        }
