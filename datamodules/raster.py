"""Reading GeoTIFFs with validation: every failure becomes a :class:`DataError` naming the file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from datamodules.errors import DataError, data_error

GEOTIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
TRANSFORM_TOLERANCE_PX = 1e-6
"""Twins' geotransforms may differ by this share of a pixel (float noise of their writers)."""


@dataclass(frozen=True)
class Georef:
    """Where a raster lies on the ground: its CRS (None when it has none) and geotransform."""

    crs: CRS | None
    transform: Affine


def _crs_name(crs: CRS | None) -> str:
    return "none" if crs is None else str(crs)


def georef_differences(first: Georef, second: Georef) -> list[str]:
    """Say how two rasters' georeferencing differs (empty when they are co-registered).

    The transforms are compared within :data:`TRANSFORM_TOLERANCE_PX` of the smaller pixel
    side, so float noise from different writers of one grid is not a difference.

    Args:
        first: One raster's georeferencing.
        second: The other's.

    Returns:
        One ``"CRS ... vs ..."`` / ``"transform ... vs ..."`` phrase per difference.

    """
    diffs: list[str] = []
    if first.crs != second.crs:
        diffs.append(f"CRS {_crs_name(first.crs)} vs {_crs_name(second.crs)}")
    grid = first.transform
    sides = [math.hypot(t.a, t.d) for t in (grid, second.transform)]  # column steps
    sides += [math.hypot(t.b, t.e) for t in (grid, second.transform)]  # row steps
    pixel = min(sides) or 1.0
    if not grid.almost_equals(second.transform, TRANSFORM_TOLERANCE_PX * pixel):
        diffs.append(f"transform {tuple(grid)[:6]} vs {tuple(second.transform)[:6]}")
    return diffs


def read_georeferenced(
    path: str | Path,
    *,
    what: str,
    bands: Sequence[int] | None = None,
    expected_count: int | None = None,
    min_count: int | None = None,
    dtype: str | None = None,
    window: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, Georef]:
    """Read (part of) a GeoTIFF, check its band count and dtype, and say where it lies.

    The georeferencing comes from the open file's header, so twins can be compared at no
    extra read.

    Args:
        path: File to read.
        what: Short description used in messages (e.g. ``"S2 patch"``).
        bands: 1-based band numbers to read, in this order (default: all bands).
        expected_count: Exact number of bands the file must hold.
        min_count: Minimum number of bands the file must hold.
        dtype: Required data type name (e.g. ``"uint16"``).
        window: ``(row_off, col_off, height, width)`` to read instead of the full raster.

    Returns:
        Array (C, H, W) in the file's dtype, and the file's (whole raster's) georeferencing.

    Raises:
        DataError: When the file is missing, unreadable, corrupt/truncated, or has the wrong
            band count or dtype; the message names the file.

    """
    try:
        with rasterio.open(path) as src:
            if expected_count is not None and src.count != expected_count:
                raise data_error(path, f"{what} has {src.count} band(s), expected {expected_count}")
            if min_count is not None and src.count < min_count:
                raise data_error(
                    path, f"{what} has {src.count} band(s), needs at least {min_count}"
                )
            if dtype is not None and src.dtypes[0] != dtype:
                raise data_error(path, f"{what} has dtype {src.dtypes[0]}, expected {dtype}")
            win = None if window is None else Window(window[1], window[0], window[3], window[2])
            indexes = list(bands) if bands is not None else None
            data = src.read(indexes=indexes, window=win)
            georef = Georef(crs=src.crs, transform=src.transform)
    except DataError:
        raise
    except (RasterioError, OSError, ValueError, IndexError) as exc:
        raise data_error(
            path, f"cannot read {what} as GeoTIFF (corrupt or truncated?): {exc}"
        ) from exc
    return np.asarray(data), georef


def check_square(array: np.ndarray, path: str | Path, what: str, min_size: int) -> int:
    """Check that a (C, H, W) raster is square and at least ``min_size`` pixels wide.

    Args:
        array: Raster data (C, H, W).
        path: The file it came from.
        what: Short description for messages.
        min_size: Smallest allowed side length (the tile size).

    Returns:
        The side length.

    Raises:
        DataError: When it is not square or smaller than ``min_size``.

    """
    height, width = array.shape[-2:]
    if height != width:
        raise data_error(path, f"{what} is {height}x{width} px, not square")
    if height < min_size:
        raise data_error(
            path, f"{what} is {height}x{width} px, smaller than the tile size {min_size}"
        )
    return int(height)


def raster_side(path: str | Path, what: str) -> int:
    """Return a raster's width from its header (no pixel read).

    Raises:
        DataError: Missing, unreadable or not a raster; the message names the file.

    """
    try:
        with rasterio.open(path) as src:
            return int(src.width)
    except (RasterioError, OSError) as exc:
        raise data_error(
            path, f"cannot read {what} as GeoTIFF (corrupt or truncated?): {exc}"
        ) from exc


def is_geotiff(path: Path) -> bool:
    """Return whether a path has a GeoTIFF suffix (case-insensitive)."""
    return path.suffix.lower() in GEOTIFF_SUFFIXES
