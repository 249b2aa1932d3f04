"""Surface materials: the vocabulary shared by layouts, spectra, SAR and land cover."""

from __future__ import annotations

from enum import IntEnum


class Material(IntEnum):
    """Surface material of one (sub-)pixel; layouts paint these, renderers look them up."""

    WATER = 0
    FOREST = 1
    SHRUB = 2
    GRASS = 3
    CROP = 4
    SOIL = 5
    SAND = 6
    ROOF_METAL = 7
    ROOF_TILE = 8
    CONCRETE = 9
    ASPHALT = 10


N_MATERIALS = len(Material)

VEGETATION: tuple[Material, ...] = (Material.FOREST, Material.SHRUB, Material.GRASS, Material.CROP)
"""Materials whose spectra follow the season's greenness."""

ROOFS: tuple[Material, ...] = (Material.ROOF_METAL, Material.ROOF_TILE)
"""Materials of standing buildings (cast shadows, double bounce in SAR)."""
