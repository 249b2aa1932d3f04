"""Spatial texture primitives (numpy only): fractal noise, blobs, curves, grids, cell randomness."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

Shape = tuple[int, int]

_EPS = 1e-12
_HASH_X = 73856093  # large primes of the classic spatial-hash (Teschner et al. 2003)
_HASH_Y = 19349663
_HASH_TABLE = 4096  # size of the per-call random table that cell hashes index into


@lru_cache(maxsize=64)
def _frequency_radius(shape: Shape) -> np.ndarray:
    """Radial spatial frequency (cycles per pixel) of a real-FFT (rfft2) grid of ``shape``."""
    fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    return np.sqrt(fy * fy + fx * fx)


@lru_cache(maxsize=256)
def _power_law(
    shape: Shape, beta: float, min_scale_px: float, max_scale_px: float | None
) -> np.ndarray:
    """Return the (cached) spectral amplitude used by ``fractal_field``."""
    radius = _frequency_radius(shape)
    f_low = 1.0 / max_scale_px if max_scale_px else 1.0 / max(shape)
    amp = np.maximum(radius, f_low) ** (-beta / 2.0)
    amp[radius > 1.0 / max(min_scale_px, 1.0)] = 0.0
    amp[0, 0] = 0.0
    return amp.astype(np.float32)


@lru_cache(maxsize=256)
def _gaussian_kernel(shape: Shape, sigma_px: float) -> np.ndarray:
    return np.exp(-2.0 * (np.pi * sigma_px * _frequency_radius(shape)) ** 2).astype(np.float32)


def standardise(field: np.ndarray) -> np.ndarray:
    """Return ``field`` shifted and scaled to zero mean and unit standard deviation."""
    f = field - field.mean()
    return (f / (f.std() + _EPS)).astype(np.float32)


def fractal_field(
    shape: Shape,
    rng: np.random.Generator,
    beta: float = 2.0,
    min_scale_px: float = 1.0,
    max_scale_px: float | None = None,
) -> np.ndarray:
    """Fractal (power-law, 1/f^beta power spectrum) Gaussian field, zero mean, unit std.

    Spectral synthesis is the continuous equivalent of summing noise octaves; beta ~2-3 gives
    natural terrain/cloud-like fields. Scales below ``min_scale_px`` are cut, and scales above
    ``max_scale_px`` flattened, so one knob sets the grain and another the largest blobs.
    """
    shape = (int(shape[0]), int(shape[1]))
    amp = _power_law(shape, float(beta), float(min_scale_px), max_scale_px)
    noise = rng.standard_normal(shape, dtype=np.float32)
    return standardise(np.fft.irfft2(np.fft.rfft2(noise) * amp, s=shape))


def gaussian_smooth(field: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur over the last two axes, periodic boundaries, through the FFT."""
    if sigma_px <= 0:
        return field.astype(np.float32)
    shape = (int(field.shape[-2]), int(field.shape[-1]))
    kernel = _gaussian_kernel(shape, float(sigma_px))
    return np.fft.irfft2(np.fft.rfft2(field) * kernel, s=shape).astype(np.float32)


def blob_field(shape: Shape, rng: np.random.Generator, scale_px: float) -> np.ndarray:
    """Smooth random blobs of roughly ``scale_px`` diameter (white noise, Gaussian-blurred)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    return standardise(gaussian_smooth(noise, max(scale_px, 0.5) / 2.0))


def cover_mask(field: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` highest values of ``field`` (exact areal coverage)."""
    if fraction <= 0:
        return np.zeros(field.shape, dtype=bool)
    if fraction >= 1:
        return np.ones(field.shape, dtype=bool)
    return field > np.quantile(field, 1.0 - fraction)


def coords(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) relative to the tile centre, float32."""
    y = np.arange(shape[0], dtype=np.float32)[:, None] - (shape[0] - 1) / 2.0
    x = np.arange(shape[1], dtype=np.float32)[None, :] - (shape[1] - 1) / 2.0
    return np.broadcast_to(y, shape), np.broadcast_to(x, shape)


def rotated_coords(
    shape: Shape, angle: float, shift: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u along ``angle``, v across) in pixels, origin at centre + ``shift``."""
    y, x = coords(shape)
    c, s = np.cos(angle), np.sin(angle)
    u = x * c + y * s + shift[0]
    v = -x * s + y * c + shift[1]
    return u.astype(np.float32), v.astype(np.float32)


def curve_distance(
    shape: Shape,
    rng: np.random.Generator,
    angle: float,
    offset_px: float,
    wiggle_px: float,
    wavelength_px: float,
) -> np.ndarray:
    """Across-track distance (px) to a gently meandering line (road, river, shoreline axis)."""
    u, v = rotated_coords(shape, angle)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    centre = offset_px + wiggle_px * np.sin(2.0 * np.pi * u / max(wavelength_px, 1.0) + phase)
    return np.abs(v - centre)


def cell_random(ix: np.ndarray, iy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform [0, 1) value constant over each integer cell (ix, iy): per-lot/per-field dice."""
    table = rng.random(_HASH_TABLE, dtype=np.float32)
    h = (ix.astype(np.int64) * _HASH_X) ^ (iy.astype(np.int64) * _HASH_Y)
    return table[np.mod(h, _HASH_TABLE)]


def disks(shape: Shape, centres: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of disks: (mask, index of the covering disk or -1); centres are (n, 2) in px."""
    if len(centres) == 0:
        return np.zeros(shape, dtype=bool), np.full(shape, -1, dtype=np.int32)
    yy = np.arange(shape[0], dtype=np.float32)[:, None, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :, None]
    d2 = (yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2
    inside = d2 <= radii.astype(np.float32) ** 2
    any_inside = inside.any(axis=-1)
    return any_inside, np.where(any_inside, inside.argmax(axis=-1), -1).astype(np.int32)


def block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks over the last two axes (area-integrating sensor)."""
    if factor == 1:
        return arr
    *lead, h, w = arr.shape
    out = arr.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))
    return out.astype(np.float32)


def shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift a 2-D array by whole pixels, filling uncovered borders with zeros/False."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out
