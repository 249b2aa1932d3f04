"""SEN12MS-style land-cover patches (MODIS MCD12Q1: IGBP, LCCS-LC, LCCS-LU, LCCS-SH codes).

The real layer comes from 500 m MODIS pixels resampled to 10 m, so it is blocky: here each
500 m cell of the scene grid takes the majority code of the materials it contains.
"""

from __future__ import annotations

import numpy as np

from cloudxfer.sim.materials import N_MATERIALS
from cloudxfer.sim.materials import Material as M

MODIS_CELL_M = 500.0  # MCD12Q1 ground sampling
UNCLASSIFIED = 255  # LCCS layers code classes they do not describe (e.g. built-up) as 255

# (IGBP, LCCS-LC, LCCS-LU, LCCS-SH) per material; forest uses mixed forest (IGBP 5).
CODES: dict[M, tuple[int, int, int, int]] = {
    M.WATER: (17, 3, 3, 3),
    M.FOREST: (5, 16, 10, 10),
    M.SHRUB: (7, 42, 40, 40),
    M.GRASS: (10, 31, 30, 30),
    M.CROP: (12, 31, 36, 30),
    M.SOIL: (16, 1, 1, 1),
    M.SAND: (16, 1, 1, 1),
    M.ROOF_METAL: (13, UNCLASSIFIED, 9, UNCLASSIFIED),
    M.ROOF_TILE: (13, UNCLASSIFIED, 9, UNCLASSIFIED),
    M.CONCRETE: (13, UNCLASSIFIED, 9, UNCLASSIFIED),
    M.ASPHALT: (13, UNCLASSIFIED, 9, UNCLASSIFIED),
}
_CODES = np.array([CODES[M(i)] for i in range(N_MATERIALS)], dtype=np.uint16)  # (M, 4)
# Built-up materials vote as one class (IGBP 13) so urban fabric is not split three ways.
_VOTE = np.array([CODES[M(i)][0] for i in range(N_MATERIALS)], dtype=np.intp)
_N_IGBP = 18  # IGBP codes are 1..17; index 0 unused


def landcover(materials: np.ndarray, row0: int, col0: int, pixel_m: float = 10.0) -> np.ndarray:
    """LC patch (4, H, W) uint16 from a 10 m material map placed at scene pixel (row0, col0)."""
    h, w = materials.shape
    cell = MODIS_CELL_M / pixel_m
    rows = ((np.arange(h) + row0) // cell).astype(np.intp)
    cols = ((np.arange(w) + col0) // cell).astype(np.intp)
    rows -= rows.min()
    cols -= cols.min()
    n_c = int(cols.max()) + 1
    cell_id = rows[:, None] * n_c + cols[None, :]
    igbp = _VOTE[materials.astype(np.intp)]
    n_cells = int(cell_id.max()) + 1
    flat = (cell_id * _N_IGBP + igbp).ravel()
    votes = np.bincount(flat, minlength=n_cells * _N_IGBP).reshape(n_cells, _N_IGBP)
    winner_igbp = votes.argmax(axis=1)[cell_id]
    # representative material of the winning IGBP class -> all four codes
    rep = np.zeros(_N_IGBP, dtype=np.intp)
    for i in reversed(range(N_MATERIALS)):
        rep[_VOTE[i]] = i
    return _CODES[rep[winner_igbp]].transpose(2, 0, 1).copy()
