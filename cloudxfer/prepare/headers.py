"""Where each patch lies: its CRS, geotransform and size, read from the file headers only."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from datamodules.errors import data_error
from datamodules.progress import Progress

__all__ = ["Header", "read_headers"]


@dataclass(frozen=True)
class Header:
    """A raster's place and size."""

    crs: str
    transform: tuple[float, ...]
    width: int
    height: int


def read_header(path: Path) -> Header:
    """Read one raster's header (no pixels).

    Raises:
        DataError: Unreadable or not a raster; the message names the file.

    """
    try:
        with rasterio.open(path) as src:
            crs = "" if src.crs is None else str(src.crs)
            return Header(crs, tuple(src.transform)[:6], src.width, src.height)
    except (RasterioError, OSError) as exc:
        raise data_error(path, f"cannot read the GeoTIFF header (corrupt?): {exc}") from None


def read_headers(paths: Sequence[Path], workers: int, what: str) -> list[Header]:
    """Read many headers with threads (GDAL releases the GIL), showing progress."""
    progress = Progress(what, len(paths))
    headers: list[Header] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for header in pool.map(read_header, paths):
            headers.append(header)
            progress.update()
    progress.close()
    return headers
