"""Stage F2: the two-modality target model distilled from three frozen teachers (Fig. 4).

Teachers: the optical and SAR auxiliaries from F1 and the source model f_S. The loss is
``rho_opt * L_opt + rho_sar * L_sar + w_S * L_S`` with each term a distillation cross-entropy
against the same target output Q_T; the IRM weights rho come from the auxiliaries' contributions
(``irm: batch``), per sample (``irm: sample``), or are 1 (``irm: none``). No pseudo-label filter
here: the paper keeps heavily clouded samples in F2.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from cloudxfer.irm import bound_ratios, contribution, modality_weights
from cloudxfer.losses import TargetKind, distillation_loss, teacher_targets
from cloudxfer.models import LateFusionClassifier, SceneClassifier, modality_of
from cloudxfer.stages.base import StageModule, default_backbone

__all__ = ["TargetDistillation"]

TARGET_INPUTS = ["image_opt", "image_sar"]


class TargetDistillation(StageModule):
    """Opt & SAR target network f_T with IRM-weighted distillation from three teachers.

    Args:
        teacher_opt: F1 optical auxiliary checkpoint.
        teacher_sar: F1 SAR auxiliary checkpoint.
        teacher_source: source_finetune checkpoint (f_S, fed the optical tile).
        backbone: torchvision model name (paper: ``googlenet``).
        fusion: ``early`` (one network on the 3+3 stacked channels, as the paper draws it) or
            ``late`` (one encoder per modality, features concatenated).
        irm: ``none``, ``batch`` (ratios of batch sums, DDP-synced) or ``sample``.
        irm_reference: ``self`` (each auxiliary's confidence in its own prediction, as
            METHOD.md reads eq. 5) or ``source`` (its probability of the class f_S predicts:
            the arrow from the source output into the ratio in the paper's Fig. 4).
        targets: ``hard`` or ``soft`` teacher targets.
        temperature: distillation temperature for soft targets.
        source_weight: weight of the source term (fixed at 1 in the paper).
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "target"

    def __init__(
        self,
        teacher_opt: str | None = None,
        teacher_sar: str | None = None,
        teacher_source: str | None = None,
        backbone: str | None = None,
        fusion: Literal["early", "late"] = "early",
        irm: Literal["none", "batch", "sample"] = "batch",
        irm_reference: Literal["self", "source"] = "self",
        targets: TargetKind = "hard",
        temperature: float = 1.0,
        source_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "target")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        model_cls = SceneClassifier if fusion == "early" else LateFusionClassifier
        self.model = model_cls(backbone, TARGET_INPUTS, len(self.class_names))

    def setup(self, stage: str) -> None:
        """Start the network (``init``), then load and validate the three frozen teachers."""
        super().setup(stage)
        if stage != "fit" or self._teachers:
            return
        hp = self.hparams
        aux = {"aux_opt", "aux_sar"}
        f_s = {"source_finetune"}
        # the optical teacher may be f_S itself (the target_fs_opt diagnostic row)
        opt_stages = {"auxiliary", *f_s}
        self.add_teacher("opt", hp["teacher_opt"], opt_stages, modality="opt", methods=aux | f_s)
        self.add_teacher("sar", hp["teacher_sar"], {"auxiliary"}, modality="sar", methods=aux)
        self.add_teacher("source", hp["teacher_source"], f_s, modality="opt", methods=f_s)

    def weights(
        self, logits_opt: Tensor, logits_sar: Tensor, reference: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """IRM weights (rho_opt, rho_sar): scalars, per-sample (B,), or ones without IRM.

        ``reference``: f_S's logits for the Fig. 4 arrow variant (``irm_reference: source``).
        """
        mode = self.hparams["irm"]
        if mode == "none":
            one = torch.ones((), device=logits_opt.device)
            return one, one
        return modality_weights(logits_opt, logits_sar, mode == "sample", reference)

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, modality_of(TARGET_INPUTS)

    def compute_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """IRM-weighted sum of the three distillation terms, and what to log about it."""
        hp = self.hparams
        out = self.teacher_outputs(batch)
        logits = self(batch)
        terms = {
            name: distillation_loss(
                logits,
                teacher_targets(out[name], hp["targets"], hp["temperature"]),
                hp["temperature"],
            )
            for name in ("opt", "sar", "source")
        }
        reference = out["source"] if hp.get("irm_reference") == "source" else None
        rho_opt, rho_sar = self.weights(out["opt"], out["sar"], reference)
        extra: dict[str, Tensor] = {}
        if reference is not None and hp["irm"] != "none":
            # S at f_S's class can be ~0: held to eq. 5's range [1/M, M] (docs/baselines.md)
            rho_opt, rho_sar, extra["irm/clipped_share"] = bound_ratios(
                rho_opt, rho_sar, out["opt"].shape[1]
            )
        loss = (
            rho_opt * terms["opt"] + rho_sar * terms["sar"] + hp["source_weight"] * terms["source"]
        ).mean()
        logs = {
            "loss/total": loss.detach(),
            "loss/opt": terms["opt"].detach().mean(),
            "loss/sar": terms["sar"].detach().mean(),
            "loss/source": terms["source"].detach().mean(),
            "irm/rho_opt": rho_opt.float().mean(),
            "irm/rho_sar": rho_sar.float().mean(),
            "irm/s_opt": contribution(out["opt"], reference).mean(),
            "irm/s_sar": contribution(out["sar"], reference).mean(),
            **extra,
        }
        return loss, logs
