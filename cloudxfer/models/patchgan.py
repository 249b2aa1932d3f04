"""A small PatchGAN discriminator for the CycIT row's CycleGAN (Isola et al. 2017).

Three 4 x 4 convolutions (two strided) map a (B, 3, 64, 64) tile to (B, 1, 15, 15) logits,
one per overlapping 22 x 22 pixel patch: the discriminator judges local texture, not the
whole scene, as CycleGAN's 70 x 70 PatchGAN does on 256 px images. Instance norm as in
CycleGAN; ``width`` 32 keeps it CPU-sized (about 35 k parameters).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["PatchDiscriminator"]

CHANNELS = 3
"""Image channels judged (R, G, B or VV, VH, VV-VH; standardised)."""
KERNEL = 4
SLOPE = 0.2
"""LeakyReLU slope of CycleGAN's discriminator."""


class PatchDiscriminator(nn.Module):
    """PatchGAN: per-patch real/fake logits of a (B, 3, H, W) image, (B, 1, H/4 - 1, W/4 - 1).

    Args:
        width: Channels of the first convolution (doubled by the second).

    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        self.spec: dict[str, Any] = {"kind": "patchgan", "width": width}
        self.layers = nn.Sequential(
            nn.Conv2d(CHANNELS, width, KERNEL, stride=2, padding=1),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.Conv2d(width, 2 * width, KERNEL, stride=2, padding=1),
            nn.InstanceNorm2d(2 * width),
            nn.LeakyReLU(SLOPE, inplace=True),
            nn.Conv2d(2 * width, 1, KERNEL, stride=1, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Patch logits (higher: judged real)."""
        return self.layers(x)  # type: ignore[no-any-return]
