"""Controlled degradations of clear optical tiles: Gaussian blur, a colour shift and noise.

For CycIT's degradation check (:mod:`cloudxfer.reporting.degradation`): clear tiles degraded
step by step to lower PSNR / SSIM, so f_S's accuracy can be read against the image quality
its translated SAR tiles reach. Applied in reflectance ([0, 1]; the result clipped there, as
the translations are before they are scored), deterministic for a given seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

__all__ = ["COLOUR_DIRECTION", "LADDER", "Degradation", "degrade", "ladder"]

COLOUR_DIRECTION = (1.0, -0.5, 0.5)
"""Per-channel (R, G, B) direction of the colour shift: redder, less green, bluer."""


@dataclass(frozen=True)
class Degradation:
    """One level: blur, then a per-channel offset, then additive Gaussian noise (reflectance).

    Attributes:
        blur: Standard deviation of the Gaussian blur, pixels (0: none).
        shift: Size of the colour shift: ``shift`` x :data:`COLOUR_DIRECTION` is added.
        noise: Standard deviation of the additive Gaussian noise.

    """

    blur: float = 0.0
    shift: float = 0.0
    noise: float = 0.0

    def describe(self) -> str:
        """Short label: ``blur 1.0 shift 0.02 noise 0.02``."""
        return f"blur {self.blur:g} shift {self.shift:g} noise {self.noise:g}"


LADDER: tuple[Degradation, ...] = (
    Degradation(0.0, 0.0, 0.0),
    Degradation(0.5, 0.01, 0.01),
    Degradation(1.0, 0.02, 0.02),
    Degradation(1.5, 0.04, 0.03),
    Degradation(2.0, 0.06, 0.05),
    Degradation(3.0, 0.08, 0.08),
    Degradation(4.0, 0.12, 0.12),
    Degradation(6.0, 0.2, 0.2),
)
"""The default levels, from the clear tile (level 0) to about 12 dB PSNR on the simulated
tiles: a range that covers the translations' scores (docs/baselines.md, CycIT)."""


def _kernel_size(sigma: float, side: int) -> int:
    """Odd kernel covering +-3 sigma, at most the tile's side (reflect padding needs less)."""
    size = 2 * math.ceil(3 * sigma) + 1
    limit = side if side % 2 else side - 1
    return min(size, limit)


def degrade(reflectance: Tensor, level: Degradation, seed: int = 0) -> Tensor:
    """Degrade (B, 3, H, W) reflectance tiles by ``level``; the result clipped to [0, 1].

    Args:
        reflectance: Clear tiles in reflectance.
        level: The degradation.
        seed: Seed of the noise (the same tiles and seed give the same result).

    """
    out = reflectance.float()
    if level.blur > 0:
        size = _kernel_size(level.blur, min(out.shape[-2:]))
        out = gaussian_blur(out, [size, size], [level.blur, level.blur])
    if level.shift:
        direction = torch.tensor(COLOUR_DIRECTION, dtype=out.dtype, device=out.device)
        out = out + level.shift * direction.view(1, -1, 1, 1)
    if level.noise > 0:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(out.shape, generator=generator, dtype=out.dtype)
        out = out + level.noise * noise.to(out.device)
    return out.clamp(0.0, 1.0)


def ladder(
    blur: Sequence[float], shift: Sequence[float], noise: Sequence[float]
) -> list[Degradation]:
    """Levels from three equally long lists (one value per level each)."""
    if not len(blur) == len(shift) == len(noise):
        raise ValueError(
            f"blur, shift and noise need one value per level each, got {len(blur)}, "
            f"{len(shift)}, {len(noise)}"
        )
    return [Degradation(b, s, n) for b, s, n in zip(blur, shift, noise, strict=True)]
