"""OGM-GE (Peng et al., CVPR 2022) on TLF's network: the peer IRM is compared against.

On-the-fly gradient modulation: per batch, each modality's score is the summed probability its
share of the fused logits gives the target class; the dominant modality's encoder gradients
(conv weights) are scaled by k = 1 - tanh(alpha * relu(rho)), rho = its score over the other's,
and Gaussian noise with the gradient's own std is added to them ("GE"), between a start and an
end epoch. The targets are TLF's (labels where labelled, f_S's pseudo-labels elsewhere): no
hidden label is ever used.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from cloudxfer.models import LateFusionClassifier
from cloudxfer.stages.fusion import LateFusionDistillation

__all__ = ["OgmGeFusion", "modulate", "modulation_coefficients"]


def modulation_coefficients(scores: dict[str, float], alpha: float) -> dict[str, float]:
    """Return k per modality: 1 - tanh(alpha * relu(rho)) for the dominant one, 1 otherwise.

    ``scores`` holds two modalities; rho is a modality's score over the other's.
    """
    out = dict.fromkeys(scores, 1.0)
    (a, s_a), (b, s_b) = scores.items()
    if s_a != s_b:
        dominant, rho = (a, s_a / max(s_b, 1e-12)) if s_a > s_b else (b, s_b / max(s_a, 1e-12))
        out[dominant] = 1.0 - math.tanh(alpha * max(rho, 0.0))
    return out


class OgmGeFusion(LateFusionDistillation):
    """TLF's late-fusion network and loss, trained with OGM-GE's gradient modulation.

    Args:
        alpha: modulation strength (the paper reports 0.1-0.8).
        modulation_start: first epoch with modulation.
        modulation_end: first epoch without it again.
        gaussian_enhancement: add N(0, std(grad)) to the modulated gradients ("GE").
        **kwargs: see :class:`~cloudxfer.stages.fusion.LateFusionDistillation`.

    """

    def __init__(
        self,
        alpha: float = 0.5,
        modulation_start: int = 0,
        modulation_end: int = 1_000_000,
        gaussian_enhancement: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self._scores: dict[str, Tensor] = {}

    def compute_loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """TLF's loss; keeps each modality's batch score for the gradient step that follows."""
        model = self.model
        assert isinstance(model, LateFusionClassifier)
        logits, parts = model.forward_parts(batch)
        target, labelled = self.targets(batch)
        loss, logs = self.fusion_loss(logits, target, labelled)
        self._scores = {
            key: (torch.softmax(part.detach().float(), dim=1) * target).sum()
            for key, part in parts.items()
        }
        return loss, logs

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Scale (and enhance) the dominant encoder's conv-weight gradients, then log k."""
        hp = self.hparams
        if (
            not self._scores
            or not hp["modulation_start"] <= self.current_epoch < hp["modulation_end"]
        ):
            return
        # scores are sums over the batch: summed over processes, every rank gets the same k
        scores = {
            k: float(self.trainer.strategy.reduce(v, reduce_op="sum"))
            for k, v in self._scores.items()
        }
        coefficients = modulation_coefficients(scores, hp["alpha"])
        model = self.model
        assert isinstance(model, LateFusionClassifier)
        # GE's noise from a generator every DDP process seeds alike (the run's seed and the
        # step): the gradients are already synchronised here, so different noise per process
        # would drift the replicas apart.
        generator = torch.Generator(device=self.device)
        generator.manual_seed(torch.initial_seed() + self.global_step)
        for key, k in coefficients.items():
            if k < 1.0:
                modulate(model.encoders[key], k, hp["gaussian_enhancement"], generator)
        self.log_dict(
            {f"ogm/k_{key.removeprefix('image_')}": k for key, k in coefficients.items()},
            on_step=True,
            on_epoch=False,
        )


def modulate(
    encoder: torch.nn.Module, k: float, enhance: bool, generator: torch.Generator | None = None
) -> None:
    """Set grad to k * grad (+ N(0, std(grad)) with GE) for every conv weight of ``encoder``."""
    for param in encoder.parameters():
        grad = param.grad
        if grad is None or grad.dim() != 4:
            continue
        if enhance:
            noise = torch.randn(
                grad.shape, generator=generator, device=grad.device, dtype=grad.dtype
            )
            param.grad = grad * k + noise * (grad.std() + 1e-8)
        else:
            param.grad = grad * k
