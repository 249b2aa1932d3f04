"""CycleGAN's PatchGAN discriminator (Isola et al. 2017), width and depth configurable.

``layers`` stride-2 4 x 4 convolutions (``width``, ``2 width``, ... channels, at most
``8 width``), one stride-1 4 x 4 convolution with twice the last width, and a stride-1 4 x 4
convolution to one logit per patch; LeakyReLU 0.2 after each but the last, instance norm after
each but the first and the last. ``layers`` 3 at ``width`` 64 is CycleGAN's C64-C128-C256-C512
discriminator (2.765 M parameters), whose logits each see a 70 x 70 pixel patch.

Receptive field and 64 px tiles: a patch is 16, 34 and 70 px for ``layers`` 1, 2 and 3
(:func:`receptive_field`). CycleGAN judges 70 px patches of 256 px images (27 % of the
side); on this project's 64 px tiles the same network's 6 x 6 logits each see more than the
whole tile (70 > 64, partly padding), so it judges the tile as a whole, not its texture. Two
layers judge 34 px patches (14 x 14 logits, half the tile's side), one layer 16 px patches
(30 x 30 logits, a quarter of the side: CycleGAN's ratio).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from cloudxfer.models.resnet_generator import cyclegan_init

__all__ = ["PatchDiscriminator", "receptive_field"]

CHANNELS = 3
"""Image channels judged (R, G, B or VV, VH, VV-VH; standardised)."""
KERNEL = 4
SLOPE = 0.2
"""LeakyReLU slope of CycleGAN's discriminator."""
MAX_MULTIPLIER = 8
"""Channels grow to at most 8 x ``width`` (CycleGAN's cap)."""


def receptive_field(layers: int) -> int:
    """Side in pixels of the patch one logit of a ``layers``-deep PatchGAN sees."""
    field = KERNEL  # the output convolution (stride 1)
    field += KERNEL - 1  # the stride-1 convolution before it
    for _ in range(layers):  # each stride-2 convolution doubles the field and adds its kernel
        field = 2 * field + (KERNEL - 2)
    return field


def _widths(width: int, layers: int) -> list[int]:
    """Channels of the ``layers`` strided convolutions and the stride-1 one after them."""
    return [width * min(2**i, MAX_MULTIPLIER) for i in range(layers + 1)]


class PatchDiscriminator(nn.Module):
    """PatchGAN: per-patch real/fake logits of a (B, 3, H, W) image, (B, 1, h, w).

    Args:
        width: Channels of the first convolution (CycleGAN: 64).
        layers: Stride-2 convolutions (CycleGAN: 3, 70 x 70 patches).

    """

    def __init__(self, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        if width < 1 or layers < 1:
            raise ValueError(f"width and layers must be positive, got {width}, {layers}")
        widths = _widths(width, layers)
        modules: list[nn.Module] = [
            nn.Conv2d(CHANNELS, widths[0], KERNEL, stride=2, padding=1),
            nn.LeakyReLU(SLOPE, inplace=True),
        ]
        for index, (c_in, c_out) in enumerate(zip(widths, widths[1:], strict=False)):
            stride = 2 if index < layers - 1 else 1  # the last of these is the stride-1 one
            modules += [
                nn.Conv2d(c_in, c_out, KERNEL, stride=stride, padding=1),
                nn.InstanceNorm2d(c_out),
                nn.LeakyReLU(SLOPE, inplace=True),
            ]
        modules.append(nn.Conv2d(widths[-1], 1, KERNEL, stride=1, padding=1))
        self.layers = nn.Sequential(*modules)
        cyclegan_init(self)
        self.spec: dict[str, Any] = {
            "kind": "patchgan",
            "width": width,
            "layers": layers,
            "receptive_field": receptive_field(layers),
            "parameters": sum(p.numel() for p in self.parameters()),
        }

    def forward(self, x: Tensor) -> Tensor:
        """Patch logits (higher: judged real)."""
        return self.layers(x)  # type: ignore[no-any-return]
