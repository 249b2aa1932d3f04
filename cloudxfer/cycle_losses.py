"""CycleGAN's objectives (Zhu et al. 2017) with least-squares adversarial terms (LSGAN).

The generators minimise ``lsgan(D(fake), real=True)`` plus the weighted cycle-consistency L1
(and, for CycIT's adaptation, a paired L1 against known optical twins); the discriminators
minimise ``(lsgan(D(real), True) + lsgan(D(fake), False)) / 2``. Every term of an empty batch
part is a zero that keeps the graph, so a batch without optical references still steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CYCLE_WEIGHT", "l1_or_zero", "lsgan"]

CYCLE_WEIGHT = 10.0
"""CycleGAN's weight of the cycle-consistency loss (lambda = 10)."""
REAL, FAKE = 1.0, 0.0
"""LSGAN targets of the discriminator's patch outputs."""


def lsgan(logits: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss of patch outputs against the real (1) or fake (0) target."""
    target = torch.full_like(logits, REAL if real else FAKE)
    return F.mse_loss(logits, target)


def l1_or_zero(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error; 0 (with a graph) where the batch part is empty."""
    if prediction.numel() == 0:
        return prediction.sum() * 0.0
    return F.l1_loss(prediction, target)
