"""Sentinel-1 IW GRD sigma0 (VV, VH in dB) from material maps, with gamma speckle.

Mean backscatter per material are typical C-band values at ~35 deg incidence (literature
ranges quoted in docs/simulator.md). Scattering is summed in linear power over sub-pixels,
speckle is multiplicative gamma noise with the scene's equivalent number of looks (ENL), and
only then converted to dB. Clouds do not exist for SAR.
"""

from __future__ import annotations

import numpy as np

from cloudxfer.sim.materials import N_MATERIALS, ROOFS
from cloudxfer.sim.materials import Material as M
from cloudxfer.sim.scene import SceneConditions
from cloudxfer.sim.textures import block_mean, fractal_field, gaussian_smooth, shift

REFERENCE_INCIDENCE_DEG = 35.0

# (VV, VH) mean sigma0 in dB at the reference incidence.
SIGMA0_DB: dict[M, tuple[float, float]] = {
    M.WATER: (-22.0, -28.0),  # calm open water: specular, dark
    M.FOREST: (-8.0, -13.5),  # volume scattering lifts VH
    M.SHRUB: (-10.0, -16.5),
    M.GRASS: (-12.0, -19.0),
    M.CROP: (-11.0, -17.5),
    M.SOIL: (-12.5, -20.5),  # roughness/moisture dependent (-10..-15)
    M.SAND: (-16.0, -24.0),  # dry smooth sand: weak return
    M.ROOF_METAL: (-3.0, -11.0),  # building (double bounce + layover), before bright points
    M.ROOF_TILE: (-4.5, -12.0),
    M.CONCRETE: (-11.0, -19.0),  # paved yards/quays: fairly smooth
    M.ASPHALT: (-17.0, -25.0),  # smooth roads: near-specular
}

# Sensitivity to incidence angle (dB per degree above the reference): rough/bare surfaces and
# water fall off quickly, volume scatterers slowly.
INCIDENCE_SLOPE_DB: dict[M, float] = {
    M.WATER: -0.35, M.FOREST: -0.05, M.SHRUB: -0.1, M.GRASS: -0.15, M.CROP: -0.15,
    M.SOIL: -0.2, M.SAND: -0.25, M.ROOF_METAL: -0.1, M.ROOF_TILE: -0.1, M.CONCRETE: -0.2,
    M.ASPHALT: -0.25,
}  # fmt: skip

# Share of the scene soil-moisture shift each material feels (bare soil fully, forest barely).
MOISTURE_RESPONSE: dict[M, float] = {
    M.WATER: 0.0, M.FOREST: 0.2, M.SHRUB: 0.5, M.GRASS: 0.8, M.CROP: 0.7, M.SOIL: 1.0,
    M.SAND: 0.5, M.ROOF_METAL: 0.0, M.ROOF_TILE: 0.0, M.CONCRETE: 0.2, M.ASPHALT: 0.0,
}  # fmt: skip

TEXTURE_DB = 1.2  # within-class structural variation of sigma0 (biomass, roughness), dB
# Tile-to-tile spread of each material's mean backscatter (dB): the ROIs span the globe, so
# one land-cover type varies in biomass, roughness, row direction and local wetness.
MATERIAL_SD_DB = 3.0
# Extra VH-only spread (dB): the cross-polarisation ratio VV - VH of one material is not a
# constant but depends on canopy structure, growth stage and soil roughness (grassland, crops
# and bare soil span roughly 5-10 dB across sites), so VV and VH vary only partly together.
CROSS_POL_SD_DB = 1.5
# Local soil-moisture departure of one 640 m tile from its scene (rain cells, irrigation,
# drainage); weighted per material by MOISTURE_RESPONSE like the scene-wide shift.
LOCAL_MOISTURE_SD_DB = 2.5
WIND_ROUGHENING_DB = (0.0, 5.0)  # wind-roughened water brightens VV by up to ~5 dB
WIND_VH_SHARE = 0.5  # VH responds to wind about half as much as VV
BRIGHT_POINT_PROB = 0.08  # share of building sub-pixels hosting a strong point target
BRIGHT_POINT_DB = (5.0, 15.0)  # corner reflectors, facades aligned with the radar
DOUBLE_BOUNCE_DB = 6.0  # extra return where a facade faces the radar (ground-wall dihedral)
RANGE_LOOK = (0, 1)  # radar looks along +x in image coordinates (right-looking, ascending)
# IW GRD high-resolution products are delivered on a 10 m grid but resolve about 20 x 22 m
# (range x azimuth), so edges are smeared over about two pixels and the speckle is correlated
# over them: a Gaussian point-spread function with a 2-pixel FWHM, applied to the intensity
# and to the speckle, whose ENL per pixel stays the product's.
RESOLUTION_FWHM_PX = 2.0
NOISE_FLOOR_DB = -32.0  # residual thermal noise after noise removal (NESZ ~ -22 dB before)
NAN_VALUE = np.float32(np.nan)

_TABLE = np.array([SIGMA0_DB[M(i)] for i in range(N_MATERIALS)], np.float32)  # (M, 2)
_SLOPE = np.array([INCIDENCE_SLOPE_DB[M(i)] for i in range(N_MATERIALS)], np.float32)
_MOIST = np.array([MOISTURE_RESPONSE[M(i)] for i in range(N_MATERIALS)], np.float32)
_ROOF = np.zeros(N_MATERIALS, dtype=bool)
_ROOF[list(ROOFS)] = True


_PSF_SIGMA_PX = RESOLUTION_FWHM_PX / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def correlated_speckle(shape: tuple[int, ...], enl: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-mean speckle with ``enl`` looks per pixel, correlated over the resolution cell.

    Smoothing independent gamma draws of shape k with a kernel w leaves the mean at 1 and
    divides the variance by 1 / sum(w^2), so k = enl * sum(w^2) gives the product's ENL.
    """
    delta = np.zeros(shape[-2:], np.float32)
    delta[0, 0] = 1.0
    weight_sq = float((gaussian_smooth(delta, _PSF_SIGMA_PX) ** 2).sum())
    k = enl * weight_sq
    raw = rng.gamma(k, 1.0 / k, shape).astype(np.float32)
    return np.maximum(gaussian_smooth(raw, _PSF_SIGMA_PX), 1e-6)


def render_sar(
    materials: np.ndarray,
    shade: np.ndarray,
    scene: SceneConditions,
    rng: np.random.Generator,
    supersample: int = 1,
    nan_fraction: float = 0.0,
) -> np.ndarray:
    """Sigma0 (2, H/ss, W/ss) float32 in dB (VV, VH) for a supersampled material map."""
    mat = materials.astype(np.intp)
    shape = mat.shape
    table = _TABLE + rng.normal(0.0, MATERIAL_SD_DB, (N_MATERIALS, 1)).astype(np.float32)
    table[:, 1] += rng.normal(0.0, CROSS_POL_SD_DB, N_MATERIALS).astype(np.float32)
    wind = rng.uniform(*WIND_ROUGHENING_DB)
    table[M.WATER] += np.array([wind, WIND_VH_SHARE * wind], np.float32)
    delta_inc = scene.incidence_deg - REFERENCE_INCIDENCE_DEG
    moisture = scene.soil_moisture_db + rng.normal(0.0, LOCAL_MOISTURE_SD_DB)
    offset = _SLOPE * delta_inc + _MOIST * moisture + scene.sar_offset_db
    db = table[mat].transpose(2, 0, 1) + offset[mat][None]  # (2, H, W)
    texture = 0.5 * np.clip(shade, -2.0, 2.0) + 0.5 * fractal_field(shape, rng, 2.0)
    db += TEXTURE_DB * texture[None] * (mat != M.WATER)[None]
    roof = _ROOF[mat]
    facade = roof & ~shift(roof, *RANGE_LOOK)  # first roof pixel seen from the radar side
    points = roof & (rng.random(shape) < BRIGHT_POINT_PROB)
    boost = np.where(facade, DOUBLE_BOUNCE_DB, 0.0) + np.where(
        points, rng.uniform(*BRIGHT_POINT_DB, shape), 0.0
    )
    db[0] += boost.astype(np.float32)
    db[1] += 0.5 * boost.astype(np.float32)  # double bounce is mostly co-polarised
    linear = gaussian_smooth(block_mean(10.0 ** (db / 10.0), supersample), _PSF_SIGMA_PX)
    linear = np.maximum(linear, 0.0) + 10.0 ** (NOISE_FLOOR_DB / 10.0)
    speckle = correlated_speckle(linear.shape, scene.enl, rng)
    out = (10.0 * np.log10(linear * speckle)).astype(np.float32)
    if nan_fraction > 0:
        out[:, rng.random(out.shape[1:]) < nan_fraction] = NAN_VALUE
    return out
