"""Sentinel-2 L1C reflectance (DN = reflectance x 10000) of surface materials, and RGB rendering.

Surface spectra are typical library values (USGS/ASTER-like) sampled at the 13 MSI bands; the
top-of-atmosphere (TOA) signal adds a band-dependent path reflectance (Rayleigh + aerosol,
strongest in the blue) and a two-way transmittance (water-vapour absorption in B09, B10).
"""

from __future__ import annotations

import numpy as np

from cloudxfer.sim.layouts import Layout
from cloudxfer.sim.materials import N_MATERIALS, ROOFS, VEGETATION
from cloudxfer.sim.materials import Material as M
from cloudxfer.sim.textures import fractal_field, gaussian_smooth, shift

BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip
WAVELENGTH_NM = (443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190)
NATIVE_RES_M = (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20)  # MSI band resolutions
RED, GREEN, BLUE, NIR = 3, 2, 1, 7  # 0-based band indices of B04, B03, B02, B08

# Surface reflectance x 10000 per material, bands B01..B12 (B10's surface value is irrelevant:
# the atmosphere absorbs it almost entirely).
SURFACE: dict[M, tuple[int, ...]] = {
    # clear-to-moderately turbid inland water: dark, NIR ~100, SWIR ~0
    M.WATER: (600, 550, 500, 330, 250, 180, 140, 110, 100, 70, 40, 40, 30),
    # closed canopy: chlorophyll well (red ~300), red-edge rise, NIR plateau ~3000
    M.FOREST: (250, 300, 500, 280, 900, 2300, 2800, 3000, 3100, 3000, 1200, 1500, 700),
    M.SHRUB: (400, 450, 700, 650, 1100, 1900, 2300, 2500, 2600, 2500, 1800, 2300, 1500),
    M.GRASS: (350, 400, 750, 500, 1200, 2700, 3200, 3400, 3500, 3300, 1600, 2200, 1200),
    M.CROP: (300, 350, 750, 400, 1100, 3000, 3800, 4200, 4300, 4100, 1500, 2000, 1000),
    # bare soil: reflectance rising slowly with wavelength
    M.SOIL: (900, 1000, 1300, 1700, 1900, 2100, 2300, 2400, 2500, 2600, 2800, 3300, 2800),
    M.SAND: (1500, 1800, 2400, 3000, 3200, 3400, 3500, 3600, 3700, 3800, 3800, 4300, 3700),
    # built-up: spectrally flat, moderately bright (metal/concrete), red tiles, dark asphalt
    M.ROOF_METAL: (2100, 2300, 2500, 2600, 2650, 2700, 2750, 2800, 2800, 2850, 2800, 2900, 2700),
    M.ROOF_TILE: (900, 1000, 1300, 2300, 2600, 2800, 3000, 3100, 3200, 3200, 3200, 3400, 3000),
    M.CONCRETE: (1500, 1700, 1900, 2000, 2050, 2100, 2150, 2200, 2200, 2250, 2300, 2500, 2300),
    M.ASPHALT: (700, 750, 800, 850, 880, 900, 950, 1000, 1000, 1050, 1100, 1200, 1100),
}

# Senescent/dormant vegetation (dry grass, leaf-off): no red absorption, weaker NIR,
# cellulose/lignin keeps SWIR high. Mixed with the green spectra by greenness.
SENESCENT = (600, 700, 900, 1100, 1400, 1700, 1900, 2100, 2200, 2200, 2300, 3000, 2300)
EVERGREEN_SHARE = 0.5  # part of forest canopy that stays green in winter (conifers, evergreens)
TURBIDITY_DELTA = (50, 100, 350, 350, 250, 100, 60, 30, 20, 10, 0, 0, 0)  # suspended sediment

# TOA = PATH * aerosol + TRANSMITTANCE * surface (first-order radiative transfer).
PATH = (1100, 800, 450, 260, 200, 150, 120, 100, 90, 50, 5, 20, 10)
TRANSMITTANCE = (0.75, 0.8, 0.87, 0.9, 0.9, 0.92, 0.93, 0.93, 0.93, 0.35, 0.003, 0.93, 0.9)

# Relative brightness modulation per unit of layout "shade" texture, per material.
SHADE_GAIN = np.array([0.1, 0.45, 0.25, 0.12, 0.15, 0.15, 0.1, 0.3, 0.25, 0.15, 0.2], np.float32)
MIN_MODULATION = 0.1  # deepest texture shadow keeps 10 % of the mean brightness
# Tile-to-tile spread of each material's brightness (relative): the ROIs span the globe, so
# one material ranges from dark organic to bright calcareous soil, sparse to dense canopy,
# weathered to new roofs and pavements.
MATERIAL_SD = 0.2
# Tile-to-tile change of each material's spectral shape: log-reflectance offsets with this sd
# at SHAPE_KNOTS_NM, linear in between (soil iron oxides and organic matter, vegetation type
# and leaf area, roof paint), so colour varies within a class, not only brightness.
SPECTRAL_SHAPE_SD = 0.1
SHAPE_KNOTS_NM = (443.0, 665.0, 865.0, 2190.0)
# Tile-to-tile departure of vegetation greenness from the scene's (irrigation, management,
# species, local water supply).
TILE_GREENNESS_SD = 0.1
PIXEL_SD = 0.03  # pixel-level brightness noise of natural surfaces (relative)
GREENNESS_PIXEL_SD = 0.12  # within-tile variation of vegetation greenness
SHADOW_DIFFUSE = 0.35  # share of irradiance left in a shadow (diffuse skylight)
NOISE_DN = 12.0  # MSI radiometric noise (high SNR, ~0.1% reflectance)
DN_MAX = 15000  # L1C DN above 10000 occur (bright clouds); keep a generous ceiling
BUILDING_HEIGHT_M = (4.0, 15.0)  # low-rise to mid-rise buildings casting shadows

# Regional appearance of each material (one draw per scene, i.e. per region and date): soils
# range from pale calcareous to red lateritic to dark organic, canopies from bright broadleaf
# to dark conifer, roofs and pavements follow local building materials. Larger than the
# tile-to-tile spread above, so one class looks different from region to region and a few
# labelled tiles cover only some of its looks.
REGIONAL_SHAPE_SD = 0.3
REGIONAL_BRIGHTNESS_SD = 0.3

_TABLE = np.array([SURFACE[M(i)] for i in range(N_MATERIALS)], dtype=np.float32)
_VEG = np.zeros(N_MATERIALS, dtype=bool)
_VEG[list(VEGETATION)] = True
_ROOF = np.zeros(N_MATERIALS, dtype=bool)
_ROOF[list(ROOFS)] = True


def material_palette(rng: np.random.Generator, shape_sd: float, brightness_sd: float) -> np.ndarray:
    """Draw a relative gain (materials, 13 bands) changing each material's brightness and shape.

    Log-reflectance offsets with ``shape_sd`` at ``SHAPE_KNOTS_NM`` (linear in between) and a
    log-normal brightness with ``brightness_sd``, independently per material.
    """
    knots = rng.normal(0.0, shape_sd, (N_MATERIALS, len(SHAPE_KNOTS_NM)))
    shape_log = np.stack([np.interp(WAVELENGTH_NM, SHAPE_KNOTS_NM, k) for k in knots])
    brightness = rng.lognormal(0.0, brightness_sd, (N_MATERIALS, 1))
    return (brightness * np.exp(shape_log)).astype(np.float32)


def regional_palette(rng: np.random.Generator) -> np.ndarray:
    """Draw the regional appearance of every material (``REGIONAL_*`` spreads)."""
    return material_palette(rng, REGIONAL_SHAPE_SD, REGIONAL_BRIGHTNESS_SD)


def surface_reflectance(
    layout: Layout,
    rng: np.random.Generator,
    greenness: float,
    palette: np.ndarray | None = None,
) -> np.ndarray:
    """Per-pixel surface reflectance (13, H, W) x 10000 of a layout, with natural variability.

    Args:
        layout: Materials and brightness texture.
        rng: The sample's generator.
        greenness: Vegetation greenness of the scene (0 senescent .. 1 peak green).
        palette: Regional gain per material and band (``regional_palette``); none = library
            spectra.

    """
    mat = layout.materials.astype(np.intp)
    shape = mat.shape
    tile = material_palette(rng, SPECTRAL_SHAPE_SD, MATERIAL_SD)
    table = (_TABLE * tile * (1.0 if palette is None else palette)).astype(np.float32)
    table[M.WATER] += rng.uniform(0.0, 1.0) * np.asarray(TURBIDITY_DELTA, np.float32)
    greenness = greenness + rng.normal(0.0, TILE_GREENNESS_SD)
    g = np.clip(greenness + GREENNESS_PIXEL_SD * fractal_field(shape, rng, 2.0), 0.0, 1.0)
    g_forest = EVERGREEN_SHARE + (1.0 - EVERGREEN_SHARE) * g
    g_pix = np.where(mat == M.FOREST, g_forest, g)[None]
    senescent = np.asarray(SENESCENT, np.float32)[:, None, None]
    refl = table[mat].transpose(2, 0, 1)  # (13, H, W)
    veg = _VEG[mat][None]
    refl = np.where(veg, g_pix * refl + (1.0 - g_pix) * senescent, refl)
    mod = np.maximum(1.0 + SHADE_GAIN[mat] * layout.shade, MIN_MODULATION)
    mod *= 1.0 + PIXEL_SD * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(refl * mod[None], 0.0, None).astype(np.float32)


def building_shadows(
    materials: np.ndarray,
    px: float,
    sun_zenith_deg: float,
    sun_azimuth_deg: float,
    height_m: float,
) -> np.ndarray:
    """Illumination factor (H, W): ground beside buildings (away from the sun) gets diffuse only."""
    roof = _ROOF[materials.astype(np.intp)]
    length = height_m * np.tan(np.radians(sun_zenith_deg)) / px
    az = np.radians(sun_azimuth_deg)  # shadows point away from the sun (north-west here)
    dy, dx = int(round(length * np.cos(az))), int(round(-length * np.sin(az)))
    if dy == 0 and dx == 0:
        return np.ones(materials.shape, np.float32)
    steps = max(abs(dy), abs(dx))
    shadow = np.zeros_like(roof)
    for k in range(1, steps + 1):
        shadow |= shift(roof, round(dy * k / steps), round(dx * k / steps))
    shadow &= ~roof
    return np.where(shadow, SHADOW_DIFFUSE, 1.0).astype(np.float32)


def to_toa(surface: np.ndarray, aerosol: float, gain: float) -> np.ndarray:
    """Surface -> TOA reflectance x 10000 through path reflectance and transmittance."""
    path = np.asarray(PATH, np.float32)[:, None, None] * aerosol
    trans = np.asarray(TRANSMITTANCE, np.float32)[:, None, None]
    return (path + trans * surface * gain).astype(np.float32)


def sensor_resolution(toa: np.ndarray, pixel_m: float = 10.0) -> np.ndarray:
    """Blur 20 m / 60 m bands to their native resolution (L1C delivers them upsampled)."""
    out = toa.copy()
    for res in sorted(set(NATIVE_RES_M)):
        if res > pixel_m:
            idx = [b for b, r in enumerate(NATIVE_RES_M) if r == res]
            out[idx] = gaussian_smooth(toa[idx], 0.5 * res / pixel_m)
    return out


def to_dn(toa: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add radiometric noise and quantise to uint16 L1C digital numbers."""
    noisy = toa + NOISE_DN * rng.standard_normal(toa.shape, dtype=np.float32)
    return np.clip(np.rint(noisy), 1, DN_MAX).astype(np.uint16)


# 8-bit aerial RGB rendering (source domain): exposure stretch then display gamma.
RGB_EXPOSURE = (2.0, 3.2)  # reflectance 0.3 ~ white after stretching, as in aerial products
DISPLAY_GAMMA = 2.2
COLOUR_BALANCE_SD = 0.04  # per-image white balance difference between aerial campaigns


def to_rgb8(surface: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Surface reflectance (13, H, W) -> 8-bit RGB (H, W, 3) as an aerial camera would deliver."""
    rgb = surface[[RED, GREEN, BLUE]] / 10000.0
    haze = rng.uniform(0.0, 0.04) * np.array([0.6, 0.8, 1.0], np.float32)[:, None, None]
    balance = rng.lognormal(0.0, COLOUR_BALANCE_SD, (3, 1, 1))
    lin = (rgb + haze) * balance * rng.uniform(*RGB_EXPOSURE)
    img = np.clip(lin, 0.0, 1.0) ** (1.0 / DISPLAY_GAMMA) * 255.0
    return np.rint(img).astype(np.uint8).transpose(1, 2, 0)
