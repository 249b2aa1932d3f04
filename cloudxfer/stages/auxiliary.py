"""Stage F1: auxiliary distillation from the source model into one target modality (Fig. 3).

A student reading only ``opt`` (cloudy optical) or only ``sar`` learns, on the unlabelled target
train split, the frozen source model's pseudo-labels on the optical tile. Uncertain pseudo-labels
are filtered (the paper follows KDHN; criterion and threshold are configuration) and the kept
share is logged. Ground-truth labels are never read.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from cloudxfer.losses import (
    FilterCriterion,
    TargetKind,
    confidence_mask,
    distillation_loss,
    teacher_targets,
)
from cloudxfer.models import SceneClassifier
from cloudxfer.stages.base import StageModule, default_backbone

__all__ = ["AuxiliaryDistillation", "MODALITY_INPUTS"]

MODALITY_INPUTS: dict[str, str] = {"opt": "image_opt", "sar": "image_sar"}
STUDENT_INPUTS: dict[str, list[str]] = {
    "opt": ["image_opt"],
    "sar": ["image_sar"],
    "opt+sar": ["image_opt", "image_sar"],  # the KDHN row: one student on both, early fusion
}


class AuxiliaryDistillation(StageModule):
    """Single-modality student distilled from the frozen source model f_S.

    Args:
        teacher: source_finetune checkpoint (f_S), fed the optical tile.
        modality: ``opt`` or ``sar``: the student's input (``opt+sar``: both stacked, for the
            KDHN comparison row; F1 itself is single-modality).
        backbone: torchvision model name (paper: ``googlenet``).
        targets: ``hard`` (argmax pseudo-labels) or ``soft`` (tempered probabilities).
        temperature: distillation temperature for soft targets.
        filter_criterion: how uncertain pseudo-labels are dropped (``max_prob``, ``margin``,
            ``entropy`` or ``none``).
        filter_threshold: threshold of the criterion.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "auxiliary"

    def __init__(
        self,
        teacher: str | None = None,
        modality: Literal["opt", "sar", "opt+sar"] = "opt",
        backbone: str | None = None,
        targets: TargetKind = "hard",
        temperature: float = 1.0,
        filter_criterion: FilterCriterion = "max_prob",
        filter_threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "target")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.model = SceneClassifier(backbone, STUDENT_INPUTS[modality], len(self.class_names))

    def setup(self, stage: str) -> None:
        """Start the network (``init``), then load and validate the frozen source model."""
        super().setup(stage)
        if stage == "fit" and "source" not in self._teachers:
            self.add_teacher(
                "source",
                self.hparams["teacher"],
                stages={"source_finetune"},
                modality="opt",
                methods={"source_finetune"},
            )

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, str(init_args.get("modality", "opt"))

    def compute_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Distillation loss on confidently pseudo-labelled samples, kept share, agreement."""
        hp = self.hparams
        teacher_logits = self.teacher_outputs(batch)["source"]
        keep = confidence_mask(teacher_logits, hp["filter_criterion"], hp["filter_threshold"])
        logits = self(batch)
        target = teacher_targets(teacher_logits, hp["targets"], hp["temperature"])
        per_sample = distillation_loss(logits, target, hp["temperature"])
        kept = keep.float()
        # Mean over kept samples; an all-filtered batch contributes a zero loss with a graph.
        loss = (per_sample * kept).sum() / kept.sum().clamp_min(1.0)
        agreement = (logits.argmax(1) == teacher_logits.argmax(1)).float().mean()
        return loss, {
            f"loss/{hp['modality']}": loss.detach(),
            "pseudo/kept_share": kept.mean(),
            "pseudo/agreement": agreement.detach(),
        }

    def pseudo_label_diagnostics(self, logits: dict[str, Tensor], labels: Tensor) -> dict[str, Any]:
        """Kept share of the filter, and the teacher's accuracy on the kept and dropped tiles.

        Against the data set's labels, after the fact: shows what the filter removes (labels
        never enter training, the filter or any choice).
        """
        hp = self.hparams
        keep = confidence_mask(logits["source"], hp["filter_criterion"], hp["filter_threshold"])
        correct = logits["source"].argmax(1) == labels
        known = labels >= 0
        record: dict[str, Any] = {"kept_share": round(float(keep.float().mean()), 6)}
        for name, part in (("kept", keep & known), ("dropped", ~keep & known)):
            count = int(part.sum())
            accuracy = float(correct[part].float().mean()) if count else None
            record[f"teacher_oa_{name}"] = None if accuracy is None else round(accuracy, 6)
            record[f"tiles_{name}"] = count
        return record
