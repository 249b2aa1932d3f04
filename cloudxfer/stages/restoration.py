"""SPL's upstream stage: a cloud-removal U-Net pre-trained on the cloud-free source domain.

The source images (NWPU-RESISC45 / AID role, standardised as f_S's pre-training reads them)
get clouds pasted by the project's own generator (``datamodules.clouds``, through
``SourceScenesDataModule(clouds=...)``); the U-Net learns to map the clouded copy back to the
clear image with an L1 loss. No target tile is read. Not scored: ``spl`` adapts it to the
target domain and classifies its restorations with f_S (docs/baselines.md, SPL).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from cloudxfer.models.unet import CompactUNet
from cloudxfer.stages.base import Batch, StageModule

__all__ = ["CLEAR_KEY", "CLOUDY_KEY", "RestorationPretrain", "restoration_l1"]

CLOUDY_KEY = "image_opt_cloudy"
"""Source samples: the image with a pasted cloud (the restorer's input)."""
CLEAR_KEY = "image_opt"
"""Source samples: the clear image (the restorer's target)."""


def restoration_l1(restored: Tensor, clear: Tensor) -> Tensor:
    """Per-tile mean absolute error, shape (B,)."""
    return (restored - clear).abs().flatten(1).mean(dim=1)


class RestorationPretrain(StageModule):
    """Compact U-Net trained to remove pasted clouds from source-domain images (L1).

    Args:
        width: Channels of the U-Net's first level (:class:`~cloudxfer.models.unet.CompactUNet`).
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "spl_pretrain"

    def __init__(self, width: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.model = CompactUNet(width)

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, "opt"

    @property
    def inputs(self) -> list[str]:
        """The restorer reads (and writes) the optical tile."""
        return ["image_opt"]

    def forward(self, batch: Batch) -> Tensor:
        """Restored images of the batch's clouded copies, (B, 3, H, W)."""
        if CLOUDY_KEY not in batch:
            raise ValueError(
                f"{type(self).__name__} needs cloudy/clear pairs: the source datamodule must "
                "paste clouds (data.init_args.clouds)"
            )
        return self._compiled.get("model", self.model)(batch[CLOUDY_KEY])

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """L1 between restored and clear images; the input's own L1 as a reference."""
        restored = self(batch)
        loss = F.l1_loss(restored, batch[CLEAR_KEY])
        reference = F.l1_loss(batch[CLOUDY_KEY], batch[CLEAR_KEY])
        return loss, {"loss/restoration": loss.detach(), "restoration/input_l1": reference}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Log the L1 loss on held-out source images (nothing is classified)."""
        loss, _ = self.compute_loss(batch)
        n = len(batch["id"])
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self._val_means.add({"loss": loss}, n)
