"""Grids of example tiles (one row per tile, one column per image) for image-to-image rows.

Shared by SPL's restoration figure (cloudy / restored / clear twin) and CycIT's translation
figure (SAR / translated / optical): each panel is a (3, H, W) image in [0, 1] shown as RGB
after a linear display gain; a missing panel (no clear twin) shows a short note instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cloudxfer.reporting.figures import pyplot, save_png

__all__ = ["STRETCH_PERCENTILE", "ExampleRow", "display_rgb", "examples_figure", "stretch_gain"]

STRETCH_PERCENTILE = 99.0
"""Display stretch: the brightest 1 % of a reference image's values saturate."""
PANEL_INCHES = 2.2
"""Width and height of one panel."""
MIN_TOP = 1e-3
"""Smallest reference brightness a gain divides by (a black reference stays black)."""


@dataclass(frozen=True)
class ExampleRow:
    """One tile of the figure: its label, its panels and each panel's display gain."""

    label: str
    panels: tuple[Tensor | None, ...]
    """(3, H, W) images in [0, 1]; None draws ``missing`` instead."""
    gains: tuple[float, ...]
    """Linear display gain per panel."""


def display_rgb(image: Tensor, gain: float) -> np.ndarray:
    """(3, H, W) image in [0, 1] as an (H, W, 3) array in [0, 1] after a linear ``gain``."""
    return np.clip(image.permute(1, 2, 0).float().numpy() * gain, 0.0, 1.0)


def stretch_gain(reference: Tensor) -> float:
    """Gain that maps the reference's :data:`STRETCH_PERCENTILE` value to 1."""
    top = float(torch.quantile(reference.float().flatten(), STRETCH_PERCENTILE / 100))
    return 1.0 / max(top, MIN_TOP)


def examples_figure(
    out: Path, titles: Sequence[str], rows: Sequence[ExampleRow], missing: str
) -> Path:
    """Draw the rows under the column ``titles`` and save a PNG at ``out``.

    Raises:
        ValueError: No row, or a row whose panels do not match the titles.

    """
    if not rows:
        raise ValueError("no example tiles to draw")
    if any(len(row.panels) != len(titles) or len(row.gains) != len(titles) for row in rows):
        raise ValueError(f"every row needs {len(titles)} panels and gains")
    plt = pyplot()
    size = (PANEL_INCHES * len(titles), (PANEL_INCHES + 0.1) * len(rows))
    fig, axes = plt.subplots(len(rows), len(titles), figsize=size, squeeze=False)
    for r, row in enumerate(rows):
        for c, (title, image, gain) in enumerate(zip(titles, row.panels, row.gains, strict=True)):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is None:
                ax.text(0.5, 0.5, missing, ha="center", va="center", fontsize=8)
            else:
                ax.imshow(display_rgb(image, gain), interpolation="nearest")
            if r == 0:
                ax.set_title(title, fontsize=9)
        axes[r][0].set_ylabel(row.label, fontsize=7)
    fig.tight_layout()
    try:
        return save_png(fig, out)
    finally:
        plt.close(fig)
