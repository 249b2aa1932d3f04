"""Example tiles of a restoration: cloudy input, restored and clear twin, side by side (RGB).

Written by the SPL row's test next to its metrics (``restoration_examples.png``), so what PSNR
and SSIM summarise can be looked at. Tiles without a clear twin (the Hunan-style set) show
"no clear twin" in that column. Drawn by :mod:`cloudxfer.reporting.examples`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from cloudxfer.reporting.examples import (
    STRETCH_PERCENTILE,
    ExampleRow,
    display_rgb,
    examples_figure,
    stretch_gain,
)

__all__ = [
    "EXAMPLES_FILENAME",
    "STRETCH_PERCENTILE",
    "cover_label",
    "display_rgb",
    "restoration_figure",
]

EXAMPLES_FILENAME = "restoration_examples.png"
COLUMNS = ("cloudy input", "restored", "clear twin")
ID_CHARACTERS = 18
"""Trailing characters of a tile id shown as its row label."""


def cover_label(tile_id: str, fraction: float) -> str:
    """Row label: the tile id's tail and its cloud cover (``n/a`` when unknown)."""
    cover = "cover n/a" if np.isnan(fraction) else f"cover {100 * fraction:.0f} %"
    return f"{tile_id[-ID_CHARACTERS:]}\n{cover}"


def restoration_figure(
    out: Path,
    ids: list[str],
    cloudy: Tensor,
    restored: Tensor,
    clear: Tensor,
    has_clear: Tensor,
    cloud_fractions: Tensor,
) -> Path:
    """Draw one row per tile (cloudy / restored / clear; reflectance in [0, 1]) and save a PNG.

    Each row is stretched by its clear twin (else its input), the same gain for its three
    panels, so they compare directly.

    Args:
        out: PNG path.
        ids: Tile ids (row titles).
        cloudy: (N, 3, H, W) cloudy inputs.
        restored: (N, 3, H, W) restorations.
        clear: (N, 3, H, W) clear twins (ignored where ``has_clear`` is False).
        has_clear: (N,) bool: whether the tile has a clear twin.
        cloud_fractions: (N,) cloud fraction of each tile (NaN when unknown).

    """
    rows = []
    for i, tile_id in enumerate(ids):
        twin = clear[i] if bool(has_clear[i]) else None
        gain = stretch_gain(twin if twin is not None else cloudy[i])
        rows.append(
            ExampleRow(
                cover_label(tile_id, float(cloud_fractions[i])),
                (cloudy[i], restored[i], twin),
                (gain, gain, gain),
            )
        )
    return examples_figure(out, COLUMNS, rows, missing="no clear twin")
