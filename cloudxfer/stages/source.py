"""Stage 0: the source model f_S (paper Fig. 2, left).

``pretrain`` trains a classifier on the cloud-free source domain (NWPU-RESISC45 / AID role).
``finetune`` starts from a pretrain checkpoint, swaps the head for the target class scheme and
trains on the 20 labelled target optical tiles per class, so f_S speaks the target classes.
``freeze_encoder`` retrains only the head (the paper's "Finetune" baseline).
"""

from __future__ import annotations

from typing import Any, Literal, cast

from torch import Tensor

from cloudxfer.checkpoints import CheckpointError, load_frozen_model
from cloudxfer.losses import label_loss
from cloudxfer.models import SceneClassifier
from cloudxfer.stages.auxiliary import MODALITY_INPUTS
from cloudxfer.stages.base import StageModule, default_backbone

__all__ = ["SarFromSourceModel", "SourceClassification", "start_from_f_s"]


def start_from_f_s(
    model: SceneClassifier, path: str, backbone: str, class_names: list[str]
) -> None:
    """Copy f_S's encoder and head (the target classes) into ``model`` (any single input).

    For rows that start from the source model and adapt it to another input (DSAN, TTL):
    both modalities have 3 channels, so f_S's optical weights fit a SAR network too.

    Raises:
        CheckpointError: ``path`` is not f_S, or its backbone or classes differ.

    """
    source, meta = load_frozen_model(
        path, stages={"source_finetune"}, modality="opt", methods={"source_finetune"}
    )
    if meta["model"]["backbone"] != backbone:
        raise CheckpointError(
            f"{path}: backbone {meta['model']['backbone']!r} differs from this run's {backbone!r}"
        )
    if list(meta["class_names"]) != list(class_names):
        raise CheckpointError(f"{path}: classes {meta['class_names']} differ from the data's")
    model.load_state_dict(cast(SceneClassifier, source).state_dict())


class SourceClassification(StageModule):
    """Supervised optical classifier for source pre-training and target fine-tuning.

    Args:
        mode: ``pretrain`` (source classes) or ``finetune`` (target classes, from ``init_from``).
        backbone: torchvision model name (paper: ``resnet50``).
        weights: torchvision weights enum name (e.g. ``IMAGENET1K_V2``) or None; pretrain only.
        init_from: source_pretrain checkpoint to fine-tune from (required for ``finetune``).
        freeze_encoder: train only the head when fine-tuning.
        label_smoothing: cross-entropy label smoothing.
        modality: the target tile the fine-tuned network reads: ``opt``, or ``sar`` (the
            SAR "Finetune" row: the optical encoder applied to the 3 SAR channels VV, VH,
            VV-VH). Pre-training is optical.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    def __init__(
        self,
        mode: Literal["pretrain", "finetune"] = "pretrain",
        backbone: str | None = None,
        weights: str | None = None,
        init_from: str | None = None,
        freeze_encoder: bool = False,
        label_smoothing: float = 0.0,
        modality: Literal["opt", "sar"] = "opt",
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "source")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.stage_name = f"source_{mode}"
        if mode == "finetune" and init_from is None:
            raise ValueError("SourceClassification(mode='finetune') needs init_from")
        if mode == "pretrain" and modality != "opt":
            raise ValueError("SourceClassification(mode='pretrain') reads optical source images")
        inputs = [MODALITY_INPUTS[modality]]
        self.model = SceneClassifier(backbone, inputs, len(self.class_names), weights)
        self._initialised = mode == "pretrain"
        if weights is not None:
            self.initialisation = f"torchvision {weights}"
            self.mark_pretrained("model.encoder", dict(self.model.encoder.named_parameters()))

    def setup(self, stage: str) -> None:
        """For fine-tuning, copy the pre-trained encoder in before training starts.

        Done here rather than in ``__init__`` so ``test``/``predict`` of a fine-tuned checkpoint
        do not need the pre-training checkpoint any more.
        """
        super().setup(stage)
        if stage != "fit" or self._initialised:
            return
        hp = self.hparams
        pretrained, meta = load_frozen_model(
            hp["init_from"], stages={"source_pretrain"}, modality="opt", methods={"source_pretrain"}
        )
        if meta["model"]["backbone"] != hp["backbone"]:
            raise CheckpointError(
                f"{hp['init_from']}: backbone {meta['model']['backbone']!r} differs from "
                f"this run's {hp['backbone']!r}"
            )
        model = cast(SceneClassifier, self.model)
        model.encoder.load_state_dict(cast(SceneClassifier, pretrained).encoder.state_dict())
        model.encoder.requires_grad_(not hp["freeze_encoder"])
        self.mark_pretrained("model.encoder", dict(model.encoder.named_parameters()))
        self.initialisation = str(hp["init_from"])
        self._initialised = True

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return f"source_{init_args.get('mode', 'pretrain')}", str(init_args.get("modality", "opt"))

    def compute_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy against the ground-truth label, and the batch accuracy."""
        loss, accuracy = label_loss(self(batch), batch["label"], self.hparams["label_smoothing"])
        return loss, {"loss/source": loss.detach(), "train/acc": accuracy}


class SarFromSourceModel(StageModule):
    """Base of the SAR rows that start from f_S's network (DSAN, TTL); scored on SAR.

    Builds f_S's architecture over the SAR tile and copies f_S's encoder and head in when a
    fit starts (so ``test``/``predict`` of a finished checkpoint do not need f_S).

    Args:
        init_from: f_S checkpoint (``source_finetune``); None: start untrained.
        backbone: torchvision model name; must match f_S's.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    def __init__(
        self, init_from: str | None = None, backbone: str | None = None, **kwargs: Any
    ) -> None:
        backbone = default_backbone(backbone, "source")
        super().__init__(**kwargs)
        self.init_from, self.backbone = init_from, backbone
        self.model = SceneClassifier(backbone, [MODALITY_INPUTS["sar"]], len(self.class_names))
        self._initialised = init_from is None

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, "sar"

    def setup(self, stage: str) -> None:
        """Copy f_S's encoder and head in before training."""
        super().setup(stage)
        if stage != "fit" or self._initialised or self.init_from is None:
            return
        model = cast(SceneClassifier, self.model)
        start_from_f_s(model, self.init_from, self.backbone, self.class_names)
        self.mark_pretrained("model", dict(model.named_parameters()))
        self.initialisation = self.init_from
        self._initialised = True
