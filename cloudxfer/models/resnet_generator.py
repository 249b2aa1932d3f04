"""CycleGAN's ResNet generator (Zhu et al. 2017, after Johnson et al. 2016), for CycIT.

Layers in CycleGAN's notation: ``c7s1-w``, ``d2w``, ``d4w``, ``blocks`` x ``R4w``, ``u2w``,
``uw``, ``c7s1-3``: a 7 x 7 convolution, two stride-2 down convolutions, residual blocks of
two 3 x 3 convolutions with reflection padding at a quarter of the resolution, two stride-2
transposed convolutions back up and a 7 x 7 convolution to the three output channels. Instance
norm (no affine parameters) and ReLU after every convolution but the last; convolutions keep
their biases (instance norm has no shift of its own). At ``width`` 64 and 9 blocks this is
CycleGAN's 256 px generator, 11.378 M parameters from 3 to 3 channels.

No output activation: CycleGAN's tanh bounds its outputs to the [-1, 1] it scales images to,
but this project's tiles are standardised per channel (mean 0, std 1), where a clear optical
reflectance of 1 lies about 4 standard deviations above the mean; a tanh would clip every
pixel brighter than one standard deviation. The last convolution is linear, as the
standardised space needs.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["CHANNELS", "DOWNSAMPLINGS", "ResnetGenerator", "cyclegan_init"]

CHANNELS = 3
"""Image channels in and out (VV, VH, VV-VH or R, G, B; standardised)."""
DOWNSAMPLINGS = 2
"""Stride-2 convolutions before the residual blocks (and transposed ones after them)."""
INIT_STD = 0.02
"""CycleGAN's weight initialisation: N(0, 0.02) for every convolution, biases 0."""


def cyclegan_init(module: nn.Module) -> None:
    """Initialise every (transposed) convolution of ``module`` as CycleGAN does."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(layer.weight, 0.0, INIT_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _norm_relu(channels: int) -> list[nn.Module]:
    return [nn.InstanceNorm2d(channels), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """``x + conv(relu(norm(conv(x))))`` with reflection padding (CycleGAN's ``R`` block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            *_norm_relu(channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Return the block's input plus its residual."""
        return x + self.body(x)  # type: ignore[no-any-return]


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator: a (B, 3, H, W) tile to a (B, 3, H, W) tile.

    Args:
        width: Channels of the first convolution (CycleGAN: 64); the residual blocks run at
            four times this.
        blocks: Residual blocks (CycleGAN: 6 for 128 px images, 9 for 256 px).

    """

    def __init__(self, width: int = 64, blocks: int = 9) -> None:
        super().__init__()
        if width < 1 or blocks < 0:
            raise ValueError(f"width must be positive and blocks >= 0, got {width}, {blocks}")
        deep = width * 2**DOWNSAMPLINGS
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(CHANNELS, width, 7),
            *_norm_relu(width),
        ]
        for level in range(DOWNSAMPLINGS):
            c = width * 2**level
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), *_norm_relu(2 * c)]
        layers += [ResidualBlock(deep) for _ in range(blocks)]
        for level in reversed(range(DOWNSAMPLINGS)):
            c = width * 2**level
            layers += [
                nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1),
                *_norm_relu(c),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, CHANNELS, 7)]
        self.layers = nn.Sequential(*layers)
        cyclegan_init(self)
        self.spec: dict[str, Any] = {
            "kind": "resnet",
            "width": width,
            "blocks": blocks,
            "parameters": sum(p.numel() for p in self.parameters()),
        }

    @property
    def divisor(self) -> int:
        """Tile sides must be multiples of this (two stride-2 convolutions)."""
        return int(2**DOWNSAMPLINGS)

    def forward(self, x: Tensor) -> Tensor:
        """Return the translated tile, same shape as ``x`` (no output activation)."""
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise ValueError(f"tile sides must be multiples of {self.divisor}, got {x.shape}")
        return self.layers(x)  # type: ignore[no-any-return]
