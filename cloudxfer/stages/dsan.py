"""Baseline DSAN (SAR): deep subdomain adaptation from labelled optical to unlabelled SAR tiles.

Zhu et al. (TNNLS 2020). One network, initialised from f_S (the source model fine-tuned on the
target classes, so its head already speaks them), reads both modalities through the same
encoder (both have 3 channels). Per step it takes a batch of labelled target tiles' *optical*
images (the labelled source of DSAN, cross-entropy on their labels) and a batch of target
tiles' *SAR* images (the unlabelled target), and aligns their features class by class with
LMMD, weighted by DSAN's ramp. With ``sar_label_weight > 0`` the labelled tiles' SAR images
add a cross-entropy term (their labels are among the 20 per class every row may read): the
semi-supervised reading that anchors the SAR classes. It is scored on SAR alone.
docs/baselines.md says why the source side is the labelled target optical tiles rather than
the source domain's images.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor

from cloudxfer.lmmd import lmmd, lmmd_over_ranks, lmmd_ramp
from cloudxfer.losses import label_loss
from cloudxfer.models import SceneClassifier
from cloudxfer.stages.base import Batch, default_backbone
from cloudxfer.stages.source import SarFromSourceModel

__all__ = ["SubdomainAdaptation"]

SOURCE_INPUT = "image_opt"
TARGET_INPUT = "image_sar"


class SubdomainAdaptation(SarFromSourceModel):
    """DSAN: cross-entropy on labelled optical tiles + ramped LMMD to the SAR tiles.

    Trains on the datamodule's paired streams (its card's ``streams: [labelled]``): ``labelled``
    (source: optical image and label) and ``target`` (SAR image, no label read). A plain batch
    (the held-out tiles) is split the same way by its ``labelled`` flag.

    Args:
        init_from: f_S checkpoint (``source_finetune``) whose encoder and head start the run.
        backbone: torchvision model name; must match f_S's.
        lmmd_weight: weight of LMMD at the end of DSAN's ramp ``2 / (1 + exp(-10 p)) - 1``
            over training progress ``p`` (steps of ``max_epochs``).
        kernel_mul: ratio between the Gaussian kernels' bandwidths.
        kernel_num: number of Gaussian kernels.
        sar_label_weight: weight of cross-entropy on the labelled tiles' SAR images (0: the
            unsupervised DSAN, no SAR label read).
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "dsan"

    def __init__(
        self,
        init_from: str | None = None,
        backbone: str | None = None,
        lmmd_weight: float = 1.0,
        kernel_mul: float = 2.0,
        kernel_num: int = 5,
        sar_label_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "source")
        for name, weight in (("lmmd_weight", lmmd_weight), ("sar_label_weight", sar_label_weight)):
            if weight < 0:
                raise ValueError(f"SubdomainAdaptation: {name} must be >= 0, got {weight}")
        super().__init__(init_from=init_from, backbone=backbone, **kwargs)
        self.save_hyperparameters()

    def batch_size_of(self, batch: Batch) -> int:
        """Return the target tiles of the step (the labelled stream cycles beside them)."""
        return len(batch["target"]["id"]) if "target" in batch else len(batch["id"])

    def _streams(self, batch: Batch) -> tuple[Batch, Tensor]:
        """Split a step's batch into the labelled tiles' fields and the target SAR images."""
        if "target" in batch:
            return batch["labelled"], batch["target"][TARGET_INPUT]
        labelled = batch["labelled"].bool()
        fields = (SOURCE_INPUT, TARGET_INPUT, "label")
        return {key: batch[key][labelled] for key in fields}, batch[TARGET_INPUT]

    def progress(self) -> float:
        """Training progress in [0, 1] (global step over all planned steps) for the ramp."""
        try:
            total = self.trainer.estimated_stepping_batches
        except RuntimeError:  # not attached to a trainer: the ramp's end
            return 1.0
        return float(self.global_step) / max(float(total), 1.0) if total != float("inf") else 1.0

    def lmmd_weight_now(self) -> float:
        """LMMD's weight: DSAN's ramp in training; the ramp's end for held-out tiles.

        Early stopping compares held-out losses across epochs, so they are scored with one
        fixed objective (the one training ends on), not with the ramp's moving weight.
        """
        progress = self.progress() if self.training else 1.0
        return float(self.hparams["lmmd_weight"]) * lmmd_ramp(progress)

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy on the labelled optical images + ramped LMMD to the SAR images.

        With ``sar_label_weight > 0``, plus that weight times cross-entropy on the labelled
        tiles' SAR images.
        """
        model = cast(SceneClassifier, self.model)
        labelled, target_images = self._streams(batch)
        source_images, labels = labelled[SOURCE_INPUT], labelled["label"]
        sar_weight = float(self.hparams["sar_label_weight"])
        target_features = model.encoder(target_images)
        target_probabilities = torch.softmax(model.head(target_features), dim=1)
        if len(labels) == 0:  # a held-out batch without labelled tiles: alignment undefined
            zero = target_features.sum() * 0.0
            logs = {"loss/supervised": zero.detach(), "loss/lmmd": zero.detach()}
            if sar_weight > 0:
                logs["loss/supervised_sar"] = zero.detach()
            return zero, logs
        source_features = model.encoder(source_images)
        supervised, accuracy = label_loss(model.head(source_features), labels)
        # Training aligns the global batch of all DDP processes (equal batch sizes there); a
        # held-out batch's labelled share differs per process, so it is scored locally.
        align = lmmd_over_ranks if self.training else lmmd
        alignment = align(
            source_features.float(),
            target_features.float(),
            labels,
            target_probabilities.float(),
            float(self.hparams["kernel_mul"]),
            int(self.hparams["kernel_num"]),
        )
        weight = self.lmmd_weight_now()
        loss = supervised + weight * alignment
        logs = {
            "loss/supervised": supervised.detach(),
            "loss/lmmd": alignment.detach(),
            "lmmd/weight": torch.tensor(weight),
            "train/acc": accuracy,
        }
        if sar_weight > 0:
            sar_logits = model.head(model.encoder(labelled[TARGET_INPUT]))
            supervised_sar, accuracy_sar = label_loss(sar_logits, labels)
            loss = loss + sar_weight * supervised_sar
            logs["loss/supervised_sar"] = supervised_sar.detach()
            logs["train/acc_sar"] = accuracy_sar
        return loss, logs
