"""Baseline TLF: late fusion of an optical and a SAR encoder, from labels and pseudo-labels.

Our reading of the paper's TLF row (its reference is not in our copy of the text): one encoder
per modality, their pooled features concatenated before one linear head, trained on the
labelled pairs' labels and, on the unlabelled pairs, on the source model f_S's pseudo-labels.
No per-modality auxiliaries and no IRM: the modality balance is left to the joint loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cloudxfer.losses import TargetKind, distillation_loss, teacher_targets
from cloudxfer.models import LateFusionClassifier, modality_of
from cloudxfer.stages.base import StageModule, default_backbone

__all__ = ["LateFusionDistillation"]

FUSION_INPUTS = ["image_opt", "image_sar"]


class LateFusionDistillation(StageModule):
    """Late-fusion Opt & SAR network trained on labels where labelled, f_S's targets elsewhere.

    Reads ``label`` only on samples whose ``labelled`` flag is set; every other sample gets
    f_S's target (``targets``: hard argmax or softened probabilities).

    Args:
        teacher: source_finetune checkpoint (f_S, fed the optical tile).
        backbone: torchvision model name of each encoder (the profile's target backbone).
        targets: ``hard`` or ``soft`` pseudo-labels from f_S.
        temperature: distillation temperature for soft targets.
        label_weight: weight of the labelled pairs' cross-entropy (the pseudo-label term has 1).
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "fusion"

    def __init__(
        self,
        teacher: str | None = None,
        backbone: str | None = None,
        targets: TargetKind = "hard",
        temperature: float = 1.0,
        label_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "target")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.model = LateFusionClassifier(backbone, FUSION_INPUTS, len(self.class_names))

    def setup(self, stage: str) -> None:
        """Start the network (``init``), then load and validate the frozen source model."""
        super().setup(stage)
        if stage == "fit" and "source" not in self._teachers:
            f_s = {"source_finetune"}
            self.add_teacher("source", self.hparams["teacher"], f_s, modality="opt", methods=f_s)

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, modality_of(FUSION_INPUTS)

    def targets(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Per-sample target distributions and labelled mask (labels where labelled, else f_S)."""
        hp = self.hparams
        labelled = batch["labelled"]
        pseudo = teacher_targets(
            self.teacher_outputs(batch)["source"], hp["targets"], hp["temperature"]
        )
        # the data set's label of an unlabelled tile is never read: masked before use
        labels = F.one_hot(batch["label"] * labelled.long(), pseudo.shape[1]).float()
        return torch.where(labelled[:, None], labels, pseudo), labelled.float()

    def fusion_loss(
        self, logits: Tensor, target: Tensor, labelled: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean label cross-entropy (labelled) + mean distillation loss (unlabelled)."""
        hp = self.hparams
        unlabelled = 1.0 - labelled
        per_label = distillation_loss(logits, target, 1.0) * labelled
        per_pseudo = distillation_loss(logits, target, hp["temperature"]) * unlabelled
        loss_labels = per_label.sum() / labelled.sum().clamp_min(1.0)
        loss_pseudo = per_pseudo.sum() / unlabelled.sum().clamp_min(1.0)
        loss = hp["label_weight"] * loss_labels + loss_pseudo
        return loss, {
            "loss/labels": loss_labels.detach(),
            "loss/pseudo": loss_pseudo.detach(),
            "train/labelled_share": labelled.mean(),
        }

    def compute_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the joint loss of the fused logits and what to log."""
        return self.fusion_loss(self(batch), *self.targets(batch))
