"""The SPL row's easy-to-hard curriculum over cloudy/clear pairs (Tao et al., TGRS 2022).

Tao et al. rank their cloud-corrupted training pairs by texture complexity, from low to high,
and let the cloud-removal network learn them in that order ("self-paced"). Here a pair's
difficulty is the texture complexity of its clear twin (mean absolute finite difference: how
much structure there is to recover) times its cloud cover (how much of it is hidden), so a
flat or lightly clouded tile is easy and a textured, heavily clouded one hard; a pair without
cloud has difficulty 0. Each epoch admits the easiest share of the pairs, a share that grows
linearly from ``start_share`` to 1 over ``pace_epochs`` (Kumar et al.'s growing threshold of
self-paced learning, with hard 0/1 weights, on this fixed difficulty).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "admission_threshold",
    "admitted",
    "admitted_share",
    "pair_difficulty",
    "texture_complexity",
]


def texture_complexity(images: Tensor) -> Tensor:
    """Mean absolute horizontal and vertical finite difference of each (C, H, W) image, (B,)."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return (dx + dy) / 2


def pair_difficulty(clear: Tensor, cloud_fraction: Tensor) -> Tensor:
    """Difficulty of each pair: texture complexity of the clear twin times its cloud cover.

    A NaN cover (unknown) counts as fully clouded: the hardest pairs wait longest.
    """
    cover = torch.nan_to_num(cloud_fraction.float(), nan=1.0).clamp(0.0, 1.0)
    return texture_complexity(clear.float()) * cover


def admitted_share(epoch: int, start_share: float, pace_epochs: int) -> float:
    """Share of the pairs admitted at ``epoch``: ``start_share`` rising linearly to 1."""
    if not 0.0 < start_share <= 1.0:
        raise ValueError(f"start_share must lie in (0, 1], got {start_share}")
    if pace_epochs <= 0:
        return 1.0
    return min(1.0, start_share + (1.0 - start_share) * epoch / pace_epochs)


def admission_threshold(difficulties: Tensor, share: float) -> float:
    """Difficulty of the hardest pair within the easiest ``share`` of ``difficulties``.

    At least one pair is admitted; ties at the threshold are all admitted. ``inf`` when
    there are no pairs (nothing to admit, nothing refused).
    """
    if difficulties.numel() == 0:
        return math.inf
    ordered = torch.sort(difficulties.flatten().float()).values
    rank = max(1, math.ceil(share * ordered.numel()))
    return float(ordered[min(rank, ordered.numel()) - 1])


def admitted(difficulty: Tensor, threshold: float) -> Tensor:
    """Which pairs the curriculum admits: difficulty at or below the threshold (bool)."""
    return difficulty <= threshold
