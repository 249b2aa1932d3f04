"""Where tiles lie on the ground, and which tiles of one set overlap tiles of another.

SEN12MS cuts each scene into 256-px patches at a 128-px stride, so neighbouring patches share
half their area and grid tiles of neighbours can be pixel-identical. A split is safe only when
no test or validation tile covers ground a training tile covers: :func:`overlapping_pairs`
finds the pairs that do, from each patch's CRS and geotransform (a prepared patch table keeps
them, so the check needs no file).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Footprint", "overlapping_pairs", "patch_footprint", "tile_footprint"]

OVERLAP_TOLERANCE = 1e-6
"""Share of a tile's side two footprints must overlap by to count (edges that touch do not)."""


@dataclass(frozen=True)
class Footprint:
    """An axis-aligned box on the ground in one CRS."""

    crs: str
    minx: float
    miny: float
    maxx: float
    maxy: float


def tile_footprint(
    crs: str, transform: Sequence[float], top: int, left: int, size: int
) -> Footprint:
    """Return the ground box of a ``size``-px window at ``(top, left)`` of a raster.

    Args:
        crs: The raster's CRS (as text).
        transform: The raster's affine geotransform ``(a, b, c, d, e, f)``.
        top: Window row offset.
        left: Window column offset.
        size: Window side in pixels.

    """
    a, b, c, d, e, f = transform[:6]
    xs, ys = [], []
    for row in (top, top + size):
        for col in (left, left + size):
            xs.append(a * col + b * row + c)
            ys.append(d * col + e * row + f)
    return Footprint(crs, min(xs), min(ys), max(xs), max(ys))


def patch_footprint(crs: str, transform: Sequence[float], size: int) -> Footprint:
    """Return a whole ``size``-px patch's ground box."""
    return tile_footprint(crs, transform, 0, 0, size)


def overlapping_pairs(
    queries: Sequence[Footprint], references: Sequence[Footprint]
) -> list[tuple[int, int]]:
    """Return ``(query index, reference index)`` for every pair whose boxes overlap.

    Boxes in different CRSs never overlap here (SEN12MS scenes each lie in their own UTM
    zone). A spatial hash on a cell of the largest box side keeps this linear in the number
    of boxes.

    Args:
        queries: E.g. the test or validation tiles.
        references: E.g. the training tiles.

    Returns:
        Pairs sorted by query index, then reference index.

    """
    if not queries or not references:
        return []
    cell = max(max(b.maxx - b.minx, b.maxy - b.miny) for b in (*queries, *references)) or 1.0
    buckets: dict[tuple[str, int, int], list[int]] = {}
    for index, box in enumerate(references):
        key = (box.crs, math.floor(box.minx / cell), math.floor(box.miny / cell))
        buckets.setdefault(key, []).append(index)
    pairs: list[tuple[int, int]] = []
    for qi, q in enumerate(queries):
        tolerance = OVERLAP_TOLERANCE * max(q.maxx - q.minx, q.maxy - q.miny, 1e-12)
        found: set[int] = set()
        for cx in range(math.floor(q.minx / cell) - 1, math.floor(q.maxx / cell) + 1):
            for cy in range(math.floor(q.miny / cell) - 1, math.floor(q.maxy / cell) + 1):
                for ri in buckets.get((q.crs, cx, cy), ()):
                    r = references[ri]
                    width = min(q.maxx, r.maxx) - max(q.minx, r.minx)
                    height = min(q.maxy, r.maxy) - max(q.miny, r.miny)
                    if width > tolerance and height > tolerance:
                        found.add(ri)
        pairs.extend((qi, ri) for ri in sorted(found))
    return pairs
