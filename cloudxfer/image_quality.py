"""Image quality on the test split: PSNR and SSIM of restored or translated tiles vs clear twins.

Scored in reflectance ([0, 1] after undoing the standardisation, clipped), where a data range
of 1 is physical. A restoration (SPL) is scored only on clouded tiles that have a clear twin (a
clear tile is its own twin: its input would score an infinite PSNR), beside its cloudy input on
the same tiles, so the gain of the restoration reads off directly; a SAR-to-optical translation
(CycIT) on every tile with a clear twin. torchmetrics states: they sync across DDP ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torchmetrics import Metric, SumMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

__all__ = [
    "QUALITY_KEYS",
    "TRANSLATION_KEYS",
    "RestorationQuality",
    "TranslationQuality",
    "to_reflectance",
]

DATA_RANGE = 1.0
"""Reflectance range the scores assume."""
QUALITY_KEYS: tuple[str, ...] = ("psnr", "ssim", "psnr_input", "ssim_input", "n_restored")
"""What :meth:`RestorationQuality.compute` returns (``test/<key>`` in ``metrics.json``)."""


def to_reflectance(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Undo the per-channel standardisation of (B, 3, H, W) images and clip to [0, 1]."""
    return (images * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)).clamp(0.0, DATA_RANGE)


class RestorationQuality(nn.Module):
    """PSNR (mean over tiles) and SSIM of restored and of cloudy tiles against clear twins.

    Args:
        mean: Per-channel mean of the standardisation (reflectance units).
        std: Per-channel std of the standardisation.

    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32), False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32), False)
        self.scores: dict[str, Metric] = nn.ModuleDict(  # type: ignore[assignment]
            {
                name: (
                    PeakSignalNoiseRatio(data_range=DATA_RANGE, dim=(1, 2, 3))
                    if name.startswith("psnr")
                    else StructuralSimilarityIndexMeasure(data_range=DATA_RANGE)
                )
                for name in QUALITY_KEYS[:-1]
            }
        )
        self.count = SumMetric()

    def reflectance(self, images: Tensor) -> Tensor:
        """Standardised images as clipped reflectance."""
        mean, std = self.mean, self.std
        assert isinstance(mean, Tensor) and isinstance(std, Tensor)
        return to_reflectance(images.float(), mean, std)

    def update(self, restored: Tensor, cloudy: Tensor, clear: Tensor, scored: Tensor) -> None:
        """Add the tiles where ``scored`` (bool, (B,)) is True; images are standardised."""
        n = int(scored.sum())
        self.count.update(torch.tensor(float(n), device=restored.device))
        if not n:
            return
        truth = self.reflectance(clear[scored])
        for name, images in (("", restored), ("_input", cloudy)):
            guess = self.reflectance(images[scored])
            self.scores[f"psnr{name}"].update(guess, truth)
            self.scores[f"ssim{name}"].update(guess, truth)

    def compute(self) -> dict[str, float]:
        """Return :data:`QUALITY_KEYS`; NaN scores where no tile was scored (e.g. no twins)."""
        n = float(self.count.compute())
        out = {name: math.nan for name in QUALITY_KEYS[:-1]}
        if n > 0:
            out.update({name: float(metric.compute()) for name, metric in self.scores.items()})
        out["n_restored"] = n
        return out

    def reset(self) -> None:
        """Clear all states."""
        for metric in self.scores.values():
            metric.reset()
        self.count.reset()


TRANSLATION_KEYS: tuple[str, ...] = ("psnr", "ssim", "n_translated")
"""What :meth:`TranslationQuality.compute` returns (``test/<key>`` in ``metrics.json``)."""


class TranslationQuality(nn.Module):
    """PSNR (mean over tiles) and SSIM of SAR-to-optical translations against clear twins.

    For the CycIT row: every test tile with a clear twin is scored (a tile the cloud plan
    left clear is its own twin, and its SAR input is no copy of it), in reflectance like
    :class:`RestorationQuality`; the SAR input has no optical score to compare with.

    Args:
        mean: Per-channel optical mean of the standardisation (reflectance units).
        std: Per-channel optical std of the standardisation.

    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32), False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32), False)
        self.psnr = PeakSignalNoiseRatio(data_range=DATA_RANGE, dim=(1, 2, 3))
        self.ssim = StructuralSimilarityIndexMeasure(data_range=DATA_RANGE)
        self.count = SumMetric()

    def reflectance(self, images: Tensor) -> Tensor:
        """Standardised optical images as clipped reflectance."""
        mean, std = self.mean, self.std
        assert isinstance(mean, Tensor) and isinstance(std, Tensor)
        return to_reflectance(images.float(), mean, std)

    def update(self, translated: Tensor, clear: Tensor, scored: Tensor) -> None:
        """Add the tiles where ``scored`` (bool, (B,)) is True; images are standardised."""
        n = int(scored.sum())
        self.count.update(torch.tensor(float(n), device=translated.device))
        if not n:
            return
        guess, truth = self.reflectance(translated[scored]), self.reflectance(clear[scored])
        self.psnr.update(guess, truth)
        self.ssim.update(guess, truth)

    def compute(self) -> dict[str, float]:
        """Return :data:`TRANSLATION_KEYS`; NaN scores where no tile had a clear twin."""
        n = float(self.count.compute())
        scores = {"psnr": math.nan, "ssim": math.nan}
        if n > 0:
            ssim = cast(Tensor, self.ssim.compute())  # a tensor unless asked for the full map
            scores = {"psnr": float(self.psnr.compute()), "ssim": float(ssim)}
        return {**scores, "n_translated": n}

    def reset(self) -> None:
        """Clear all states."""
        self.psnr.reset()
        self.ssim.reset()
        self.count.reset()
