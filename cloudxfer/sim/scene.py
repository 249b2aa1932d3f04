"""Per-scene acquisition conditions shared by all patches of one scene (season, sun, SAR)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudxfer.sim.spectra import regional_palette

SEASONS: tuple[str, ...] = (
    "ROIs1158_spring",
    "ROIs1868_summer",
    "ROIs1970_fall",
    "ROIs2017_winter",
)
"""SEN12MS season folder names (DATA.md)."""

# Vegetation greenness (0 = senescent/dormant, 1 = peak green) per season for the mostly
# northern-temperate SEN12MS scenes; spread covers other latitudes/hemispheres.
SEASON_GREENNESS: dict[str, float] = {
    SEASONS[0]: 0.7,
    SEASONS[1]: 0.95,
    SEASONS[2]: 0.6,
    SEASONS[3]: 0.35,
}
GREENNESS_SPREAD = 0.2
HUNAN_GREENNESS = (
    0.6,
    1.0,
)  # subtropical monsoon Hunan: evergreen-dominated, green most of the year

# Solar zenith at the ~10:30 Sentinel-2 overpass for mid-latitudes, by season (degrees).
SEASON_SUN_ZENITH: dict[str, float] = {
    SEASONS[0]: 40.0,
    SEASONS[1]: 30.0,
    SEASONS[2]: 50.0,
    SEASONS[3]: 62.0,
}
SUN_ZENITH_SPREAD = 8.0

AEROSOL_RANGE = (0.6, 1.8)  # path radiance scale relative to a moderately clear atmosphere
RADIOMETRIC_GAIN_SD = 0.04  # scene-to-scene calibration/BRDF brightness spread (relative)
INCIDENCE_RANGE = (30.0, 45.0)  # Sentinel-1 IW swath incidence angles (degrees)
SOIL_MOISTURE_SD_DB = 3.0  # scene wetness shifts sigma0 of soil and low vegetation (dB)
SAR_CALIBRATION_SD_DB = 0.3  # absolute calibration spread of S1 GRD (dB)
ENL_RANGE = (4.0, 5.0)  # equivalent number of looks of S1 IW GRD high resolution

# Size of man-made and agricultural objects relative to the layouts' nominal metres (field
# parcels, lots, blocks, halls): a log-uniform factor per region (smallholder paddies and
# dense old towns to large mechanised fields and sprawling suburbs).
OBJECT_SCALE_RANGE = (0.5, 2.0)

UTM_ZONES = (1, 60)  # northern-hemisphere UTM zones -> EPSG:326zz
HUNAN_UTM_ZONE = 49  # Hunan province, ~108-114 deg E
UTM_EASTING_RANGE = (200_000.0, 800_000.0)  # metres, inside a UTM zone
UTM_NORTHING_RANGE = (2_000_000.0, 6_500_000.0)  # metres, ~18-58 deg N


@dataclass(frozen=True)
class SceneConditions:
    """Everything that is constant across one scene's patches."""

    index: int
    season: str
    greenness: float
    sun_zenith_deg: float
    sun_azimuth_deg: float
    aerosol: float
    gain: float
    incidence_deg: float
    soil_moisture_db: float
    sar_offset_db: float
    enl: float
    epsg: int
    origin: tuple[float, float]  # (easting, northing) of the scene's upper-left corner, metres
    palette: np.ndarray  # regional gain per material and band (spectra.regional_palette)
    object_scale: float  # regional size of objects relative to the layouts' nominal metres


def draw_scene(index: int, rng: np.random.Generator, hunan: bool = False) -> SceneConditions:
    """Draw one scene's conditions; season cycles with the index so all seasons are present."""
    season = SEASONS[index % len(SEASONS)]
    if hunan:
        greenness = rng.uniform(*HUNAN_GREENNESS)
        zone = HUNAN_UTM_ZONE
    else:
        greenness = SEASON_GREENNESS[season] + rng.uniform(-GREENNESS_SPREAD, GREENNESS_SPREAD)
        zone = int(rng.integers(UTM_ZONES[0], UTM_ZONES[1] + 1))
    easting = float(np.round(rng.uniform(*UTM_EASTING_RANGE), -1))
    northing = float(np.round(rng.uniform(*UTM_NORTHING_RANGE), -1))
    return SceneConditions(
        index=index,
        season=season,
        greenness=float(np.clip(greenness, 0.05, 1.0)),
        sun_zenith_deg=float(
            SEASON_SUN_ZENITH[season] + rng.uniform(-SUN_ZENITH_SPREAD, SUN_ZENITH_SPREAD)
        ),
        sun_azimuth_deg=float(rng.uniform(130.0, 170.0)),  # morning sun from the south-east
        aerosol=float(rng.uniform(*AEROSOL_RANGE)),
        gain=float(1.0 + rng.normal(0.0, RADIOMETRIC_GAIN_SD)),
        incidence_deg=float(rng.uniform(*INCIDENCE_RANGE)),
        soil_moisture_db=float(rng.normal(0.0, SOIL_MOISTURE_SD_DB)),
        sar_offset_db=float(rng.normal(0.0, SAR_CALIBRATION_SD_DB)),
        enl=float(rng.uniform(*ENL_RANGE)),
        epsg=32600 + zone,
        origin=(easting, northing),
        palette=regional_palette(rng),
        object_scale=log_uniform(rng, OBJECT_SCALE_RANGE),
    )


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """Draw a value log-uniformly between ``bounds`` (scale factors spread evenly in ratio)."""
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))
