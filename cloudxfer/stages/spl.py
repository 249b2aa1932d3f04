"""Baseline SPL (Opt): remove the clouds, then classify the restored tile with f_S.

Tao et al., "Thick cloud removal in optical remote sensing images using a texture complexity
guided self-paced learning method" (TGRS 2022), as the paper runs it: a cloud-removal network
pre-trained elsewhere (here ``spl_pretrain``: source-domain images with our pasted clouds),
"modified by 20 cloud/cloud-free sample pairs [per class] to adopt the target scenarios", then
classification of its restorations. The adaptation admits the pairs from easy to hard
(``cloudxfer.curriculum``); f_S classifies the restored tiles, frozen. Scored on OA/AA/Kappa
like every row, plus PSNR/SSIM of the restoration on the test split's clouded tiles
(``cloudxfer.image_quality``) and a figure of examples. docs/baselines.md gives the choices.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from cloudxfer.checkpoints import CheckpointError, load_weights
from cloudxfer.curriculum import admission_threshold, admitted, admitted_share, pair_difficulty
from cloudxfer.image_quality import RestorationQuality
from cloudxfer.models import SceneClassifier
from cloudxfer.models.unet import CompactUNet
from cloudxfer.reporting.restoration import EXAMPLES_FILENAME, restoration_figure
from cloudxfer.stages.base import Batch, StageModule, default_backbone
from cloudxfer.stages.restoration import RestorationPretrain, restoration_l1
from cloudxfer.stages.source import start_from_f_s

__all__ = ["RestoreThenClassify", "SelfPacedRestoration"]

CLEAR_KEY = "image_opt_clear"
"""Target samples: the clear optical twin (``clear_twins: true``), NaN where withheld."""
AVAILABLE_KEY = "clear_available"
"""Target samples: whether the clear twin is served for the tile."""


class RestoreThenClassify(nn.Module):
    """The restorer followed by the (frozen) classifier: class logits of restored tiles."""

    def __init__(self, restorer: CompactUNet, classifier: SceneClassifier) -> None:
        super().__init__()
        self.restorer = restorer
        self.classifier = classifier
        self.inputs = ["image_opt"]
        self.spec: dict[str, Any] = {
            "kind": "restore_then_classify",
            "restorer": dict(restorer.spec),
            "classifier": dict(classifier.spec),
        }

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Class logits of the restored optical tiles, (B, classes)."""
        return self.classifier({"image_opt": self.restorer(batch["image_opt"])})


class SelfPacedRestoration(StageModule):
    """SPL: adapt the pre-trained restorer on labelled target pairs, easy first; classify.

    Args:
        restorer_from: ``spl_pretrain`` checkpoint whose U-Net starts the adaptation.
        classifier: f_S checkpoint (``source_finetune``) that classifies the restored tiles.
        backbone: f_S's torchvision model name (its network is rebuilt for test).
        width: U-Net width; must match the pre-trained restorer's.
        start_share: share of the pairs (the easiest) admitted in the first epoch.
        pace_epochs: epochs until every pair is admitted.
        examples: test tiles drawn in ``restoration_examples.png``.
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "spl"

    def __init__(
        self,
        restorer_from: str | None = None,
        classifier: str | None = None,
        backbone: str | None = None,
        width: int = 16,
        start_share: float = 0.5,
        pace_epochs: int = 5,
        examples: int = 6,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "source")
        super().__init__(**kwargs)
        admitted_share(0, start_share, pace_epochs)  # validates the pace
        self.save_hyperparameters()
        classifier_net = SceneClassifier(backbone, ["image_opt"], len(self.class_names))
        classifier_net.requires_grad_(False)  # f_S stays as fine-tuned: only the restorer learns
        self.model = RestoreThenClassify(CompactUNet(width), classifier_net)
        standardisation = self.normalisation.get("standardisation") or {}
        self.quality = RestorationQuality(
            standardisation.get("opt_mean", [0.0, 0.0, 0.0]),
            standardisation.get("opt_std", [1.0, 1.0, 1.0]),
        )
        self._initialised = restorer_from is None and classifier is None
        self._difficulties: Tensor | None = None
        self._examples: list[dict[str, Any]] = []

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, "opt"

    @property
    def restorer(self) -> CompactUNet:
        """The cloud-removal network (the only trained part)."""
        assert isinstance(self.model, RestoreThenClassify)
        return self.model.restorer

    # --- fit ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Load the pre-trained restorer and f_S before training (test reads the checkpoint)."""
        if stage != "fit" or self._initialised:
            return
        hp = self.hparams
        if hp["restorer_from"] is None or hp["classifier"] is None:
            raise ValueError("SelfPacedRestoration needs restorer_from and classifier to fit")
        path = str(hp["restorer_from"])
        state, meta = load_weights(path, {RestorationPretrain.stage_name})
        if meta["model"].get("width") != hp["width"]:
            raise CheckpointError(
                f"{path}: restorer width {meta['model'].get('width')} differs from this run's "
                f"{hp['width']}"
            )
        self.restorer.load_state_dict(state)
        assert isinstance(self.model, RestoreThenClassify)
        start_from_f_s(
            self.model.classifier, str(hp["classifier"]), hp["backbone"], self.class_names
        )
        self.model.classifier.requires_grad_(False)
        self._initialised = True

    def on_fit_start(self) -> None:
        """Check the data serves clear twins; rank the training pairs by difficulty."""
        super().on_fit_start()
        datamodule = self.trainer.datamodule  # type: ignore[attr-defined]
        if not getattr(datamodule, "clear_twins", False):
            raise ValueError(
                "SPL adapts on cloudy/clear pairs: its datamodule must serve clear twins "
                "(--data.init_args.clear_twins=true)"
            )
        dataset = datamodule.subset_dataset("fit")
        difficulties = []
        for index in range(len(dataset)):
            sample = dataset[index]
            if bool(sample[AVAILABLE_KEY]):
                clear = sample[CLEAR_KEY].unsqueeze(0)
                difficulties.append(pair_difficulty(clear, sample["cloud_fraction"].view(1)))
        self._difficulties = torch.cat(difficulties) if difficulties else torch.zeros(0)
        if not difficulties:
            rank_zero_warn(
                "SPL: none of the training tiles has a clear twin (real cloudy data): the "
                "restorer stays the source-pretrained one (docs/baselines.md, SPL)"
            )

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """L1 restoration loss over the admitted pairs (training) or every pair (held out)."""
        if AVAILABLE_KEY not in batch:
            raise ValueError("SPL needs clear twins in its batches (data clear_twins: true)")
        pairs = batch[AVAILABLE_KEY].bool()
        clear = torch.nan_to_num(batch[CLEAR_KEY], nan=0.0)  # withheld twins: masked out below
        per_tile = restoration_l1(self.restorer(batch["image_opt"]), clear)
        share = 1.0
        weight = pairs
        if self.training:
            difficulty = pair_difficulty(clear, batch["cloud_fraction"])
            pool = self._difficulties if self._difficulties is not None else difficulty[pairs]
            share = admitted_share(
                self.current_epoch, self.hparams["start_share"], self.hparams["pace_epochs"]
            )
            weight = pairs & admitted(difficulty, admission_threshold(pool, share))
        w = weight.float()
        # mean over the admitted pairs; a batch without one adds a zero loss with a graph
        loss = (per_tile * w).sum() / w.sum().clamp_min(1.0)
        return loss, {
            "loss/restoration": loss.detach(),
            "spl/admitted_share": torch.tensor(share),
            "spl/pairs": pairs.float().mean(),
            "spl/admitted": w.mean(),
        }

    # --- test --------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        """Fresh image-quality states and example tiles."""
        super().on_test_epoch_start()
        self.quality.reset()
        self._examples = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Classify the restored tiles; score the restoration of clouded tiles with a twin."""
        super().test_step(batch, batch_idx)
        cloudy = batch["image_opt"]
        restored = self.restorer(cloudy)
        fraction = batch["cloud_fraction"].float()
        available = batch.get(AVAILABLE_KEY, torch.zeros_like(fraction, dtype=torch.bool))
        clear = batch.get(CLEAR_KEY, torch.full_like(cloudy, math.nan))
        self.quality.update(restored, cloudy, clear, available.bool() & (fraction > 0))
        self._keep_examples(batch["id"], cloudy, restored, clear, available.bool(), fraction)

    def _keep_examples(
        self,
        ids: list[str],
        cloudy: Tensor,
        restored: Tensor,
        clear: Tensor,
        available: Tensor,
        fraction: Tensor,
    ) -> None:
        """Keep the first clouded (or cover-unknown) test tiles, in reflectance, for the figure."""
        wanted = int(self.hparams["examples"])
        for i in range(len(ids)):
            if len(self._examples) >= wanted:
                return
            if float(fraction[i]) == 0.0:
                continue
            images = [self.quality.reflectance(x[i : i + 1])[0].cpu() for x in (cloudy, restored)]
            self._examples.append(
                {
                    "id": ids[i],
                    "cloudy": images[0],
                    "restored": images[1],
                    "clear": self.quality.reflectance(torch.nan_to_num(clear[i : i + 1]))[0].cpu(),
                    "available": bool(available[i]),
                    "fraction": float(fraction[i]),
                }
            )

    def extra_test_metrics(self) -> dict[str, float]:
        """PSNR and SSIM of the restored and of the cloudy tiles (NaN without clear twins)."""
        values = self.quality.compute()
        self.quality.reset()
        return values

    def on_test_epoch_end(self) -> None:
        """Write the metrics (base class), then the figure of example tiles (rank 0)."""
        super().on_test_epoch_end()
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # all ranks: broadcasts
        if self.trainer.is_global_zero and self._examples:
            rows = self._examples
            restoration_figure(
                out / EXAMPLES_FILENAME,
                [row["id"] for row in rows],
                torch.stack([row["cloudy"] for row in rows]),
                torch.stack([row["restored"] for row in rows]),
                torch.stack([row["clear"] for row in rows]),
                torch.tensor([row["available"] for row in rows]),
                torch.tensor([row["fraction"] for row in rows]),
            )
