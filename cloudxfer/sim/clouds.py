"""Fractal clouds for already-cloudy optical tiles: thick/thin cloud, cirrus B10, shadows.

``fractal_field`` (re-exported from textures) is the reusable density generator:
``fractal_field(shape, rng, beta=3.0, min_scale_px=2.0)`` gives a smooth cloud-like field;
``cloud_density`` thresholds such a field to a wanted coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudxfer.sim.textures import fractal_field, shift

__all__ = [
    "CloudCover",
    "apply_clouds",
    "cloud_density",
    "draw_clouds",
    "fractal_field",
]

CLOUDY_SHARE = 0.7  # share of Hunan-style tiles with any cloud (paper: "~70% cloud")
COVERAGE_RANGE = (0.1, 1.0)  # areal cloud fraction of a clouded tile
THICK_THIN_BOTH = (0.4, 0.4, 0.2)  # probabilities of thick only / thin only / both (~1:1)
CLOUD_BETA = 3.0  # power-spectrum slope of cloud fields (smooth, large cells)
CIRRUS_BETA = 2.5  # thin cirrus/haze: slightly more fine structure
EDGE_SD = 0.35  # soft-edge width of thick cloud in units of the field's std
THIN_EDGE_SD = 1.0  # haze fades out over a wider range
THIN_OPACITY = (0.25, 0.6)  # peak opacity of thin cloud/haze
THICK_OPACITY = (0.95, 1.0)
CLOUD_TEXTURE = 0.06  # thick cloud tops are bright and low-texture (relative variation)
CLOUD_BRIGHTNESS = (0.6, 1.25)  # scales CLOUD_TOA: visible ~4300-9400 DN

# TOA reflectance x 10000 of optically thick water cloud, B01..B12: flat and bright in the
# VNIR, lower in SWIR (droplet absorption), B10 signal from high tops (scaled by top height).
CLOUD_TOA = (7600, 7400, 7300, 7200, 7200, 7200, 7150, 7100, 7000, 4000, 1500, 4800, 3000)
CIRRUS_TOA = (6500, 6300, 6100, 6000, 6000, 6000, 6000, 5900, 5900, 4500, 3500, 4500, 3500)
B10 = 10  # 0-based index of the cirrus band
CLOUD_TOP_B10_SCALE = (0.1, 1.0)  # low cumulus has little B10 signal, high tops more
CLOUD_HEIGHT_M = (500.0, 2500.0)  # cloud base heights that set the shadow displacement
SHADOW_DEPTH = (0.55, 0.75)  # fraction of direct light removed under a thick-cloud shadow
MAX_OFFSET_PX = 40  # canvas margin: shadows from clouds up to this far outside the tile


@dataclass
class CloudCover:
    """Cloud layers of one tile: opacity (H, W), shadow illumination factor, footprint mask."""

    thick: np.ndarray
    thin: np.ndarray
    illumination: np.ndarray
    mask: np.ndarray
    brightness: float
    b10_scale: float


def cloud_density(
    shape: tuple[int, int], rng: np.random.Generator, coverage: float, beta: float = CLOUD_BETA
) -> tuple[np.ndarray, float]:
    """Fractal density field and the threshold above which ``coverage`` of it is cloud."""
    field = fractal_field(shape, rng, beta=beta, min_scale_px=2.0)
    return field, float(np.quantile(field, 1.0 - coverage)) if coverage < 1 else -np.inf


def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def draw_clouds(
    shape: tuple[int, int],
    rng: np.random.Generator,
    pixel_m: float,
    sun_zenith_deg: float,
    sun_azimuth_deg: float,
    cloudy: bool | None = None,
) -> CloudCover:
    """Draw a tile's cloud layers; ``cloudy=None`` decides with probability CLOUDY_SHARE."""
    if cloudy is None:
        cloudy = bool(rng.random() < CLOUDY_SHARE)
    zeros = np.zeros(shape, np.float32)
    if not cloudy:
        return CloudCover(zeros, zeros, np.ones(shape, np.float32), zeros.astype(np.uint8), 1, 0)
    kind = rng.choice(3, p=THICK_THIN_BOTH)
    coverage = rng.uniform(*COVERAGE_RANGE)
    m = MAX_OFFSET_PX
    canvas = (shape[0] + 2 * m, shape[1] + 2 * m)
    inner = (slice(m, m + shape[0]), slice(m, m + shape[1]))
    thick_c = np.zeros(canvas, np.float32)
    thin = zeros
    footprint = np.zeros(shape, bool)
    if kind in (0, 2):
        field, _ = cloud_density(canvas, rng, coverage)
        t = float(np.quantile(field[inner], 1.0 - coverage))
        opacity = rng.uniform(*THICK_OPACITY)
        thick_c = (opacity * _smoothstep((field - t) / EDGE_SD + 0.5)).astype(np.float32)
        footprint |= field[inner] > t
    if kind in (1, 2):
        field, t = cloud_density(shape, rng, coverage, beta=CIRRUS_BETA)
        opacity = rng.uniform(*THIN_OPACITY)
        thin = (opacity * _smoothstep((field - t) / THIN_EDGE_SD + 0.5)).astype(np.float32)
        footprint |= field > t
    length = rng.uniform(*CLOUD_HEIGHT_M) * np.tan(np.radians(sun_zenith_deg)) / pixel_m
    az = np.radians(sun_azimuth_deg)
    dy = int(np.clip(round(length * np.cos(az)), -m, m))
    dx = int(np.clip(round(-length * np.sin(az)), -m, m))
    shadow = shift(thick_c, dy, dx)[inner]
    illumination = 1.0 - rng.uniform(*SHADOW_DEPTH) * shadow
    return CloudCover(
        thick=thick_c[inner].copy(),
        thin=thin,
        illumination=illumination.astype(np.float32),
        mask=footprint.astype(np.uint8),
        brightness=float(rng.uniform(*CLOUD_BRIGHTNESS)),
        b10_scale=float(rng.uniform(*CLOUD_TOP_B10_SCALE)),
    )


def apply_clouds(toa: np.ndarray, cover: CloudCover, rng: np.random.Generator) -> np.ndarray:
    """Blend cloud radiance into a TOA stack (13, H, W): thin first, thick cloud on top."""
    if not cover.thick.any() and not cover.thin.any():
        return toa
    shape = toa.shape[1:]
    cirrus = np.asarray(CIRRUS_TOA, np.float32)[:, None, None]
    out = (1.0 - cover.thin[None]) * toa + cover.thin[None] * cirrus
    cloud = np.asarray(CLOUD_TOA, np.float32).copy()
    cloud[B10] *= cover.b10_scale
    texture = 1.0 + CLOUD_TEXTURE * fractal_field(shape, rng, beta=3.0)
    cloud_img = cover.brightness * cloud[:, None, None] * texture[None]
    return ((1.0 - cover.thick[None]) * out + cover.thick[None] * cloud_img).astype(np.float32)
