"""A compact U-Net restorer for the SPL row: cloudy optical tile in, restored tile out.

Small on purpose (three levels, ``width``-``2 width``-``4 width`` channels; about 0.12 M
parameters at width 16): the quick profile trains it on two CPU cores in minutes, and a
64 x 64 tile needs no deeper receptive field than three levels give. The output is residual
(input + predicted correction) with the last convolution zero-initialised, so an untrained
restorer returns its input unchanged: clear ground passes through from the first step, and
training only has to learn what clouds change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["CHANNELS", "CompactUNet"]

CHANNELS = 3
"""Optical channels in and out (R, G, B, standardised)."""
LEVELS = 3
"""Resolution levels: full, 1/2 and 1/4 (a 64 px tile bottoms out at 16 px)."""
GROUPS = 4
"""Group-norm groups: batch-size independent, so 8-tile batches and single tiles alike."""


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3 x 3 convolutions, each followed by group norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(GROUPS, c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(GROUPS, c_out),
        nn.ReLU(inplace=True),
    )


class CompactUNet(nn.Module):
    """Three-level U-Net mapping a (B, 3, H, W) tile to a same-sized residual restoration.

    Args:
        width: Channels of the first level (doubled per level); a multiple of 4.

    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        if width < GROUPS or width % GROUPS:
            raise ValueError(f"width must be a positive multiple of {GROUPS}, got {width}")
        self.spec: dict[str, Any] = {"kind": "unet", "width": width}
        widths = [width * 2**level for level in range(LEVELS)]
        self.down = nn.ModuleList(
            [
                _block(CHANNELS, widths[0]),
                *(_block(a, b) for a, b in zip(widths, widths[1:], strict=False)),
            ]
        )
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose2d(b, a, 2, stride=2)
                for a, b in zip(widths, widths[1:], strict=False)
            ]
        )
        self.merge = nn.ModuleList([_block(2 * a, a) for a in widths[:-1]])
        self.out = nn.Conv2d(widths[0], CHANNELS, 1)
        for parameter in self.out.parameters():  # the identity at the start
            nn.init.zeros_(parameter)

    @property
    def divisor(self) -> int:
        """Tile sides must be multiples of this (two 2 x 2 poolings)."""
        return int(2 ** (LEVELS - 1))

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` plus the predicted correction, shape (B, 3, H, W)."""
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise ValueError(f"tile sides must be multiples of {self.divisor}, got {x.shape}")
        skips: list[Tensor] = []
        h = x
        for level, block in enumerate(self.down):
            h = block(h if level == 0 else self.pool(h))
            skips.append(h)
        for level in reversed(range(LEVELS - 1)):
            h = self.merge[level](torch.cat([self.up[level](h), skips[level]], dim=1))
        return x + self.out(h)
