"""The CycIT row's CycleGAN: two generators and two PatchGAN discriminators, SAR <-> optical.

``sar_to_opt`` translates a standardised SAR tile (VV, VH, VV-VH) into an optical-style one
(R, G, B, in the optical standardisation f_S reads); ``opt_to_sar`` goes back. Both
generators are the project's compact residual U-Net (both modalities have 3 channels), so an
untrained generator is the identity and the cycle loss starts at 0; ``d_opt`` and ``d_sar``
judge optical and SAR tiles patch by patch. One module, so one checkpoint holds all four.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import Tensor, nn

from cloudxfer.models.patchgan import PatchDiscriminator
from cloudxfer.models.unet import CompactUNet

__all__ = ["GENERATORS", "CycleGAN"]

GENERATORS = ("sar_to_opt", "opt_to_sar")
"""Attribute names of the generators (their parameters form the generator optimiser's)."""
DISCRIMINATORS = ("d_opt", "d_sar")
"""Attribute names of the discriminators."""


class CycleGAN(nn.Module):
    """SAR <-> optical generators and discriminators; ``forward`` translates SAR to optical.

    Args:
        width: First-level channels of both U-Net generators (a multiple of 4).
        disc_width: First-layer channels of both PatchGAN discriminators.

    """

    def __init__(self, width: int = 16, disc_width: int = 32) -> None:
        super().__init__()
        self.sar_to_opt = CompactUNet(width)
        self.opt_to_sar = CompactUNet(width)
        self.d_opt = PatchDiscriminator(disc_width)
        self.d_sar = PatchDiscriminator(disc_width)
        self.inputs = ["image_sar"]
        self.spec: dict[str, Any] = {"kind": "cyclegan", "width": width, "disc_width": disc_width}

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of both generators (one optimiser, as CycleGAN)."""
        for name in GENERATORS:
            yield from getattr(self, name).parameters()

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of both discriminators (the other optimiser)."""
        for name in DISCRIMINATORS:
            yield from getattr(self, name).parameters()

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Optical-style translation of the batch's SAR tiles, (B, 3, H, W)."""
        return self.sar_to_opt(batch["image_sar"])  # type: ignore[no-any-return]
