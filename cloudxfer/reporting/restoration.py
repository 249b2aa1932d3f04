"""Example tiles of a restoration: cloudy input, restored and clear twin, side by side (RGB).

Written by the SPL row's test next to its metrics (``restoration_examples.png``), so what PSNR
and SSIM summarise can be looked at. Tiles without a clear twin (the Hunan-style set) show
"no clear twin" in that column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cloudxfer.reporting.figures import pyplot, save_png

__all__ = ["EXAMPLES_FILENAME", "STRETCH_PERCENTILE", "display_rgb", "restoration_figure"]

EXAMPLES_FILENAME = "restoration_examples.png"
STRETCH_PERCENTILE = 99.0
"""Display stretch: each row's brightest 1 % of clear (else input) pixels saturate."""
COLUMNS = ("cloudy input", "restored", "clear twin")


def display_rgb(image: Tensor, gain: float) -> np.ndarray:
    """(3, H, W) reflectance as an (H, W, 3) array in [0, 1] after a linear ``gain``."""
    return np.clip(image.permute(1, 2, 0).float().numpy() * gain, 0.0, 1.0)


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

    Args:
        out: PNG path.
        ids: Tile ids (row titles).
        cloudy: (N, 3, H, W) cloudy inputs.
        restored: (N, 3, H, W) restorations.
        clear: (N, 3, H, W) clear twins (ignored where ``has_clear`` is False).
        has_clear: (N,) bool: whether the tile has a clear twin.
        cloud_fractions: (N,) cloud fraction of each tile (NaN when unknown).

    """
    if not ids:
        raise ValueError("no example tiles to draw")
    plt = pyplot()
    fig, axes = plt.subplots(len(ids), 3, figsize=(6.6, 2.3 * len(ids)), squeeze=False)
    for row, tile_id in enumerate(ids):
        reference = clear[row] if bool(has_clear[row]) else cloudy[row]
        top = float(torch.quantile(reference.float().flatten(), STRETCH_PERCENTILE / 100))
        gain = 1.0 / max(top, 1e-3)
        panels = (cloudy[row], restored[row], clear[row] if bool(has_clear[row]) else None)
        for col, (title, image) in enumerate(zip(COLUMNS, panels, strict=True)):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is None:
                ax.text(0.5, 0.5, "no clear twin", ha="center", va="center", fontsize=8)
            else:
                ax.imshow(display_rgb(image, gain), interpolation="nearest")
            if row == 0:
                ax.set_title(title, fontsize=9)
        fraction = float(cloud_fractions[row])
        cover = "cover n/a" if np.isnan(fraction) else f"cover {100 * fraction:.0f} %"
        axes[row][0].set_ylabel(f"{tile_id[-18:]}\n{cover}", fontsize=7)
    fig.tight_layout()
    try:
        return save_png(fig, out)
    finally:
        plt.close(fig)
