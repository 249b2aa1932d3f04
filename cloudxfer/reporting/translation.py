"""Example tiles of CycIT's translation: SAR input, translated tile and optical, side by side.

Written by the CycIT row's test next to its metrics (``translation_examples.png``). The SAR
panel shows VV, VH, VV-VH (scaled, standardisation undone) as R, G, B with its own stretch;
the translated and optical panels share the optical's stretch, so they compare directly. The
optical panel is the tile's clear twin where the data serves one, else the tile's optical
image as served (possibly cloudy; the Hunan-style set), which the row label says.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from cloudxfer.reporting.examples import ExampleRow, examples_figure, stretch_gain
from cloudxfer.reporting.restoration import cover_label

__all__ = ["TRANSLATION_EXAMPLES", "translation_figure"]

TRANSLATION_EXAMPLES = "translation_examples.png"
COLUMNS = ("SAR (VV, VH, VV-VH)", "translated to optical", "optical")


def translation_figure(
    out: Path,
    ids: list[str],
    sar: Tensor,
    translated: Tensor,
    optical: Tensor,
    has_clear: Tensor,
    cloud_fractions: Tensor,
) -> Path:
    """Draw one row per tile (SAR / translated / optical; values in [0, 1]) and save a PNG.

    Args:
        out: PNG path.
        ids: Tile ids (row titles).
        sar: (N, 3, H, W) scaled SAR channels.
        translated: (N, 3, H, W) translations, in reflectance.
        optical: (N, 3, H, W) clear twins where ``has_clear``, else the tiles' own optical.
        has_clear: (N,) bool: whether ``optical`` is the tile's clear twin.
        cloud_fractions: (N,) cloud fraction of each tile's optical input (NaN: unknown).

    """
    rows = []
    for i, tile_id in enumerate(ids):
        source = "clear twin" if bool(has_clear[i]) else "own optical, no twin"
        gain = stretch_gain(optical[i])
        rows.append(
            ExampleRow(
                f"{cover_label(tile_id, float(cloud_fractions[i]))}\n{source}",
                (sar[i], translated[i], optical[i]),
                (stretch_gain(sar[i]), gain, gain),
            )
        )
    return examples_figure(out, COLUMNS, rows, missing="n/a")
