"""Baseline CycIT (SAR): translate SAR tiles into optical style, then classify them with f_S.

The paper "used CycGAN to translate SAR images into an optical style before final
classification [...] The pre-trained translation model is modified by 20 optical-SAR sample
pairs." Here the CycleGAN pre-trained unpaired on target SAR tiles and source optical images
(``cycit_pretrain``) is adapted on the labelled target pairs with its own adversarial and
cycle losses plus a paired L1 between each translated SAR tile and its optical reference
(:func:`optical_reference`); then the frozen f_S classifies each test tile's translated SAR
tile. Scored on OA/AA/Kappa like every row, plus PSNR/SSIM of the translation against the
clear twins and a figure of examples. docs/baselines.md gives the choices.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from cloudxfer.checkpoints import CheckpointError
from cloudxfer.cycle_losses import CYCLE_WEIGHT, l1_or_zero
from cloudxfer.image_quality import TranslationQuality, to_reflectance
from cloudxfer.models import SceneClassifier
from cloudxfer.models.cyclegan import CycleGAN, GeneratorKind, load_translator
from cloudxfer.reporting.translation import TRANSLATION_EXAMPLES, translation_figure
from cloudxfer.stages.base import Batch, default_backbone
from cloudxfer.stages.cyclegan import (
    AVAILABLE_KEY,
    CLEAR_KEY,
    CycleGanPretrain,
    CycleGanTraining,
    Domains,
    GanSchedule,
    optical_reference,
)
from cloudxfer.stages.source import start_from_f_s

__all__ = ["CycleTranslationAdaptation", "TranslateThenClassify"]

PAIRED_WEIGHT = 10.0
"""Weight of the paired SAR -> optical L1 (as the cycle term's: both are L1 in one space)."""
IMAGE_KEYS = ("sar", "translated", "optical")
"""The example figure's images per tile."""


class TranslateThenClassify(nn.Module):
    """The CycleGAN's SAR -> optical generator followed by the (frozen) classifier f_S."""

    def __init__(self, translator: CycleGAN, classifier: SceneClassifier) -> None:
        super().__init__()
        self.translator = translator
        self.classifier = classifier
        self.inputs = ["image_sar"]
        self.spec: dict[str, Any] = {
            "kind": "translate_then_classify",
            "translator": dict(translator.spec),
            "classifier": dict(classifier.spec),
        }

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Class logits of the SAR tiles translated into optical style, (B, classes)."""
        return self.classifier({"image_opt": self.translator(batch)})  # type: ignore[no-any-return]


class CycleTranslationAdaptation(CycleGanTraining):
    """CycIT: adapt the pre-trained CycleGAN on the labelled pairs; f_S classifies its output.

    Trains on the labelled tiles (``train_subset: labelled``, clear twins served): SAR side
    every labelled tile's SAR image, optical side their :func:`optical_reference`, adversarial
    + cycle terms as in pre-training plus ``paired_weight`` x the L1 between a translated SAR
    tile and its reference. Held-out loss: that paired L1 on the held-out labelled tiles (a
    fixed function of the SAR -> optical generator, the one the row uses; the adversarial
    terms move with the discriminators, so they cannot rank epochs).

    Args:
        translator_from: ``cycit_pretrain`` checkpoint whose CycleGAN starts the adaptation.
        classifier: f_S checkpoint (``source_finetune``) that classifies the translated tiles.
        backbone: f_S's torchvision model name (its network is rebuilt for test).
        generator: ``resnet`` or ``unet``; this and the four sizes below must match the
            pre-trained CycleGAN's (its checkpoint's spec says them).
        width: Generator width (first convolution's channels).
        blocks: Residual blocks of the ResNet generator.
        disc_width: PatchGAN discriminator width.
        disc_layers: PatchGAN stride-2 convolutions.
        cycle_weight: weight of the cycle-consistency L1 (CycleGAN: 10).
        paired_weight: weight of the paired SAR -> optical L1.
        scheduler: ``cyclegan`` (CycleGAN's policy over ``trainer.max_epochs``) or ``none``.
        examples: test tiles drawn in ``translation_examples.png``.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "cycit"

    def __init__(
        self,
        translator_from: str | None = None,
        classifier: str | None = None,
        backbone: str | None = None,
        generator: GeneratorKind = "resnet",
        width: int = 64,
        blocks: int = 6,
        disc_width: int = 64,
        disc_layers: int = 3,
        cycle_weight: float = CYCLE_WEIGHT,
        paired_weight: float = PAIRED_WEIGHT,
        scheduler: GanSchedule = "cyclegan",
        examples: int = 6,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "source")
        super().__init__(
            generator, width, blocks, disc_width, disc_layers, cycle_weight, paired_weight,
            scheduler, **kwargs,
        )  # fmt: skip
        self.save_hyperparameters()
        classifier_net = SceneClassifier(backbone, ["image_opt"], len(self.class_names))
        classifier_net.requires_grad_(False)  # f_S stays as fine-tuned: only the CycleGAN learns
        self.model = TranslateThenClassify(CycleGAN(**self.networks), classifier_net)
        standardisation = self.normalisation.get("standardisation") or {}
        self.quality = TranslationQuality(
            standardisation.get("opt_mean", [0.0, 0.0, 0.0]),
            standardisation.get("opt_std", [1.0, 1.0, 1.0]),
        )
        self.register_buffer(
            "sar_mean", torch.tensor(standardisation.get("sar_mean", [0.0] * 3)), False
        )
        self.register_buffer(
            "sar_std", torch.tensor(standardisation.get("sar_std", [1.0] * 3)), False
        )
        self._initialised = translator_from is None and classifier is None
        self._examples: list[dict[str, Any]] = []

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, "sar"

    @property
    def cyclegan(self) -> CycleGAN:
        """The CycleGAN (the only trained part)."""
        return cast(TranslateThenClassify, self.model).translator

    # --- fit ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Load the pre-trained CycleGAN and f_S before training (test reads the checkpoint)."""
        super().setup(stage)
        if stage != "fit" or self._initialised:
            return
        hp = self.hparams
        if hp["translator_from"] is None or hp["classifier"] is None:
            raise ValueError("CycleTranslationAdaptation needs translator_from and classifier")
        path = str(hp["translator_from"])
        pretrained, _ = load_translator(path, {CycleGanPretrain.stage_name})
        for part in ("generator", "discriminator"):
            theirs, ours = pretrained.spec[part], self.cyclegan.spec[part]
            if theirs != ours:
                raise CheckpointError(
                    f"{path}: CycleGAN {part} {theirs} differs from this run's {ours}"
                )
        self.cyclegan.load_state_dict(pretrained.state_dict())
        model = cast(TranslateThenClassify, self.model)
        start_from_f_s(model.classifier, str(hp["classifier"]), hp["backbone"], self.class_names)
        model.classifier.requires_grad_(False)
        self._initialised = True

    def on_fit_start(self) -> None:
        """Check the data serves clear twins (the references of clouded labelled tiles)."""
        super().on_fit_start()
        if not getattr(self.trainer.datamodule, "clear_twins", False):  # type: ignore[attr-defined]
            raise ValueError(
                "CycIT adapts on optical/SAR pairs whose optical side is cloud-free: its "
                "datamodule must serve clear twins (--data.init_args.clear_twins=true)"
            )

    def domains(self, batch: Batch) -> Domains:
        """Return the labelled tiles' SAR images and, paired with them, their references."""
        reference, has = optical_reference(batch)
        return Domains(batch["image_sar"], reference[has], has)

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the held-out objective: paired L1 of translated SAR tiles vs references."""
        reference, has = optical_reference(batch)
        translated = self.cyclegan.sar_to_opt(batch["image_sar"][has])
        loss = l1_or_zero(translated, reference[has])
        return loss, {"loss/paired": loss.detach(), "gan/paired_share": has.float().mean()}

    # --- test --------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        """Fresh image-quality states and example tiles."""
        super().on_test_epoch_start()
        self.quality.reset()
        self._examples = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Classify the translated tiles; score the translation of tiles with a clear twin."""
        super().test_step(batch, batch_idx)
        translated = self.cyclegan.sar_to_opt(batch["image_sar"])
        fraction = batch["cloud_fraction"].float()
        available = batch.get(AVAILABLE_KEY, torch.zeros_like(fraction, dtype=torch.bool)).bool()
        clear = batch.get(CLEAR_KEY, torch.full_like(translated, math.nan))
        self.quality.update(translated, clear, available)
        optical = torch.where(available.view(-1, 1, 1, 1), clear, batch["image_opt"])
        self._keep_examples(batch, translated, optical, available, fraction)

    def _keep_examples(
        self, batch: Batch, translated: Tensor, optical: Tensor, available: Tensor, fraction: Tensor
    ) -> None:
        """Keep the first test tiles (scaled SAR, reflectance) for the figure."""
        sar_mean, sar_std = cast(Tensor, self.sar_mean), cast(Tensor, self.sar_std)
        for i, tile_id in enumerate(batch["id"]):
            if len(self._examples) >= int(self.hparams["examples"]):
                return
            one = slice(i, i + 1)
            self._examples.append(
                {
                    "id": tile_id,
                    "sar": to_reflectance(batch["image_sar"][one].float(), sar_mean, sar_std)[0],
                    "translated": self.quality.reflectance(translated[one])[0],
                    "optical": self.quality.reflectance(optical[one])[0],
                    "available": bool(available[i]),
                    "fraction": float(fraction[i]),
                }
            )

    def extra_test_metrics(self) -> dict[str, float]:
        """PSNR and SSIM of the translations against the clear twins (NaN without twins)."""
        values = self.quality.compute()
        self.quality.reset()
        return values

    def on_test_epoch_end(self) -> None:
        """Write the metrics (base class), then the figure of example tiles (rank 0)."""
        super().on_test_epoch_end()
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # all ranks: broadcasts
        if self.trainer.is_global_zero and self._examples:
            rows = self._examples
            images = {k: torch.stack([row[k].cpu() for row in rows]) for k in IMAGE_KEYS}
            translation_figure(
                out / TRANSLATION_EXAMPLES,
                [row["id"] for row in rows],
                images["sar"],
                images["translated"],
                images["optical"],
                torch.tensor([row["available"] for row in rows]),
                torch.tensor([row["fraction"] for row in rows]),
            )
