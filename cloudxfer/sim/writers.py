"""File writers: reproducible GeoTIFF/PNG/CSV output and an all-or-nothing output directory."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.io import DatasetWriter
from rasterio.transform import Affine

# DEFLATE is lossless and deterministic; the horizontal predictor helps integer bands.
_PREDICTOR = {"uint16": 2, "uint8": 2, "float32": 3}
GEOTIFF_BLOCK = 256  # tile side of scene-sized GeoTIFFs (as tiled GeoTIFFs and COGs use)


def _profile(
    bands: int, height: int, width: int, dtype: str, epsg: int, transform: Affine
) -> dict[str, Any]:
    """Return the creation options every simulated GeoTIFF shares (deflate, a predictor)."""
    return {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": dtype,
        "crs": CRS.from_epsg(epsg),
        "transform": transform,
        "compress": "deflate",
        "predictor": _PREDICTOR[dtype],
    }


def write_geotiff(path: Path, array: np.ndarray, epsg: int, transform: Affine) -> None:
    """Write a (bands, H, W) array as a compressed GeoTIFF without timestamps or extra tags."""
    bands, height, width = array.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", **_profile(bands, height, width, str(array.dtype), epsg, transform)
    ) as dst:
        dst.write(array)


def open_geotiff(
    path: Path,
    bands: int,
    height: int,
    width: int,
    dtype: str,
    epsg: int,
    transform: Affine,
    nodata: float | None = None,
) -> DatasetWriter:
    """Open a tiled (``GEOTIFF_BLOCK``), compressed GeoTIFF for windowed writes of a scene."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return rasterio.open(
        path,
        "w",
        **_profile(bands, height, width, dtype, epsg, transform),
        nodata=nodata,
        tiled=True,
        blockxsize=GEOTIFF_BLOCK,
        blockysize=GEOTIFF_BLOCK,
    )


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as PNG (PIL adds no timestamp unless asked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(path, format="PNG")


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Write a small CSV with LF line endings (platform-independent bytes)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write one entry per line (classes.txt, split lists)."""
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@contextmanager
def atomic_output_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temp dir beside ``out`` and move it to ``out`` only if the block succeeds.

    Raises:
        FileExistsError: ``out`` is a non-empty directory (or a file) and ``overwrite`` is off.

    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if _is_nonempty_dir(out) and not overwrite:
        raise FileExistsError(f"{out} is not empty (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
