"""Stage 0: the source model f_S (paper Fig. 2, left).

``pretrain`` trains a classifier on the cloud-free source domain (NWPU-RESISC45 / AID role).
``finetune`` starts from a pretrain checkpoint, swaps the head for the target class scheme and
trains on the 20 labelled target optical tiles per class, so f_S speaks the target classes.
``freeze_encoder`` retrains only the head (the paper's "Finetune" baseline).
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from cloudxfer.checkpoints import load_frozen_model
from cloudxfer.models import SceneClassifier
from cloudxfer.stages.base import StageModule

__all__ = ["SourceClassification"]


class SourceClassification(StageModule):
    """Supervised optical classifier for source pre-training and target fine-tuning.

    Args:
        mode: ``pretrain`` (source classes) or ``finetune`` (target classes, from ``init_from``).
        backbone: torchvision model name (paper: ``resnet50``).
        weights: torchvision weights enum name (e.g. ``IMAGENET1K_V2``) or None; pretrain only.
        init_from: source_pretrain checkpoint to fine-tune from (required for ``finetune``).
        freeze_encoder: train only the head when fine-tuning.
        label_smoothing: cross-entropy label smoothing.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    def __init__(
        self,
        mode: Literal["pretrain", "finetune"] = "pretrain",
        backbone: str = "resnet50",
        weights: str | None = None,
        init_from: str | None = None,
        freeze_encoder: bool = False,
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.stage_name = f"source_{mode}"
        model = SceneClassifier(backbone, ["image_opt"], len(self.class_names), weights)
        if mode == "finetune":
            if init_from is None:
                raise ValueError("SourceClassification(mode='finetune') needs init_from")
            pretrained, meta = load_frozen_model(
                init_from, stages={"source_pretrain"}, modality="opt"
            )
            if meta["model"]["backbone"] != backbone:
                raise ValueError(
                    f"{init_from}: backbone {meta['model']['backbone']!r} differs from {backbone!r}"
                )
            model.encoder.load_state_dict(pretrained.encoder.state_dict())  # type: ignore[union-attr]
            model.requires_grad_(True)
            if freeze_encoder:
                model.encoder.requires_grad_(False)
        self.model = model

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Cross-entropy against the ground-truth label."""
        logits = self(batch)
        loss = F.cross_entropy(
            logits, batch["label"], label_smoothing=self.hparams["label_smoothing"]
        )
        self.log("loss/source", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == batch["label"]).float().mean())
        return loss
