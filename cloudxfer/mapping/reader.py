"""Windowed reading of a co-registered S2/S1 scene pair (and cloud mask), validated as twins.

The scene is never read whole: :class:`TwinReader` serves one strip of window rows at a time
from a rolling row buffer per file, refilled with full-width reads whose row ranges end on the
file's block boundaries (each compressed block is then decoded once, not once per window).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from datamodules.errors import DataError, data_error
from datamodules.normalisation import S1_NUM_BANDS
from datamodules.raster import Georef, georef_differences

__all__ = ["MAX_ALIGNED_ROWS", "StripArrays", "TwinReader", "check_twins", "open_raster"]

MAX_ALIGNED_ROWS = 256
"""Reads are extended to the file's next block boundary only for blocks up to this height
(typical tiled GeoTIFFs and COGs use 256 or 512); taller blocks are read as needed."""
CLOUD_THRESHOLD = 0.5
"""A float mask pixel is cloud when its value is >= this (integer masks: when non-zero)."""


def open_raster(path: Path, what: str) -> DatasetReader:
    """Open a raster for reading, or raise a DataError naming it (missing, unreadable)."""
    if not path.is_file():
        raise data_error(path, f"{what} file not found")
    try:
        return rasterio.open(path)
    except (RasterioError, OSError) as err:
        raise data_error(path, f"cannot read {what} as a raster: {err}") from err


def check_twins(paths: Sequence[Path], datasets: Sequence[DatasetReader]) -> None:
    """Refuse rasters that do not share CRS, transform and size, naming both files.

    Raises:
        DataError: Listing every property that differs from the first raster's.

    """
    ref_path, ref = paths[0], datasets[0]
    for path, ds in zip(paths[1:], datasets[1:], strict=True):
        # Transforms are compared within a millionth of the smaller pixel side, not exactly:
        # two writers of one grid (GDAL, rasterio, a reprojection tool) round the origin and
        # pixel size differently in the last digits, while a real shift is a pixel or more.
        diffs = georef_differences(Georef(ref.crs, ref.transform), Georef(ds.crs, ds.transform))
        if (ds.width, ds.height) != (ref.width, ref.height):
            diffs.append(f"size {ref.width}x{ref.height} vs {ds.width}x{ds.height} px")
        if diffs:
            raise DataError(
                f"{ref_path} and {path} are not co-registered twins: {'; '.join(diffs)}"
            )


class _RowBuffer:
    """Full-width rows of some bands of one file, read forward in block-aligned chunks."""

    def __init__(self, ds: DatasetReader, path: Path, indexes: list[int]) -> None:
        self.ds = ds
        self.path = path
        self.indexes = indexes
        block_rows = int(ds.block_shapes[0][0])
        self.align = block_rows if block_rows <= MAX_ALIGNED_ROWS else 1
        self.top = 0
        self.data = np.zeros((len(indexes), 0, ds.width), ds.dtypes[indexes[0] - 1])

    def rows(self, top: int, height: int) -> np.ndarray:
        """Return rows ``[top, top + height)`` (bands, height, width); ``top`` never decreases."""
        end = top + height
        data_end = self.top + self.data.shape[1]
        if top >= data_end:  # nothing buffered is needed any more
            self.data, self.top, data_end = self.data[:, :0], top, top
        else:
            self.data, self.top = self.data[:, top - self.top :], top
        if data_end < end:
            stop = min(self.ds.height, -(-end // self.align) * self.align)
            window = Window(0, data_end, self.ds.width, stop - data_end)  # type: ignore[call-arg]
            try:
                chunk = self.ds.read(self.indexes, window=window)
            except (RasterioError, OSError) as err:
                raise data_error(self.path, f"cannot read rows {data_end}..{stop}: {err}") from err
            self.data = np.concatenate([self.data, chunk], axis=1)
        return self.data[:, : end - top]

    def invalid(self, block: np.ndarray) -> np.ndarray:
        """Pixels (height, width) where any band is the file's nodata value or not finite."""
        bad = np.zeros(block.shape[1:], bool)
        if np.issubdtype(block.dtype, np.floating):
            bad |= ~np.isfinite(block).all(axis=0)
        nodata = self.ds.nodata
        if nodata is not None and not np.isnan(nodata):
            bad |= (block == nodata).any(axis=0)
        return bad


@dataclass(frozen=True)
class StripArrays:
    """One strip of the scene (window height, full width), as read.

    Attributes:
        opt_dn: Optical R, G, B digital numbers (3, h, W) float32, or None without optical.
        opt_valid: Where the optical is finite and not nodata (h, W) bool (all False without
            optical).
        sar_db: VV, VH in dB (2, h, W) float32 (NaN where nodata).
        sar_valid: Where the SAR is finite and not nodata (h, W) bool.
        cloud: Cloud mask (h, W) bool, or None without a mask file.

    """

    opt_dn: np.ndarray | None
    opt_valid: np.ndarray
    sar_db: np.ndarray
    sar_valid: np.ndarray
    cloud: np.ndarray | None


class TwinReader:
    """Open, validate and read a scene pair (optical optional, mask optional) strip by strip.

    Args:
        sar: Sentinel-1 scene (VV, VH in dB, 2 bands).
        opt: Sentinel-2 scene (at least ``max(opt_bands)`` bands), or None (optical missing).
        mask: Cloud mask (1 band) on the same grid, or None.
        opt_bands: 1-based optical bands giving R, G, B (the checkpoint's normalisation).

    Raises:
        DataError: A missing or unreadable file, a wrong band count, or twins that differ.

    """

    def __init__(
        self,
        sar: Path,
        opt: Path | None,
        mask: Path | None = None,
        opt_bands: Sequence[int] = (4, 3, 2),
    ) -> None:
        self._stack = ExitStack()
        try:
            files = [(p, w) for p, w in ((opt, "optical"), (sar, "SAR"), (mask, "mask")) if p]
            opened = {
                w: (Path(p), self._stack.enter_context(open_raster(Path(p), w))) for p, w in files
            }
            check_twins([v[0] for v in opened.values()], [v[1] for v in opened.values()])
            sar_path, sar_ds = opened["SAR"]
            if sar_ds.count != S1_NUM_BANDS:
                raise data_error(sar_path, f"SAR has {sar_ds.count} band(s), expected 2 (VV, VH)")
            self._sar = _RowBuffer(sar_ds, sar_path, [1, 2])
            self._opt = None
            if "optical" in opened:
                opt_path, opt_ds = opened["optical"]
                if opt_ds.count < max(opt_bands):
                    raise data_error(
                        opt_path,
                        f"optical has {opt_ds.count} band(s), the model reads bands "
                        f"{list(opt_bands)} (Sentinel-2 L1C: 13)",
                    )
                self._opt = _RowBuffer(opt_ds, opt_path, list(opt_bands))
            self._mask = None
            if "mask" in opened:
                mask_path, mask_ds = opened["mask"]
                if mask_ds.count != 1:
                    raise data_error(mask_path, f"cloud mask has {mask_ds.count} bands, expected 1")
                self._mask = _RowBuffer(mask_ds, mask_path, [1])
        except BaseException:
            self._stack.close()
            raise
        self.reference = sar_ds
        self.height, self.width = sar_ds.height, sar_ds.width
        self.crs, self.transform = sar_ds.crs, sar_ds.transform

    def __enter__(self) -> TwinReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every file."""
        self._stack.close()

    def strip(self, top: int, height: int) -> StripArrays:
        """Read rows ``[top, top + height)`` of every file (``top`` never decreases)."""
        sar_raw = self._sar.rows(top, height)
        sar_db = sar_raw.astype(np.float32)
        sar_valid = ~(self._sar.invalid(sar_raw) | ~np.isfinite(sar_db).all(axis=0))
        opt_dn, opt_valid = None, np.zeros_like(sar_valid)
        if self._opt is not None:
            opt_raw = self._opt.rows(top, height)
            opt_dn = opt_raw.astype(np.float32)
            # NaN/inf DN are nodata, as the file's nodata value is: no model ever sees them
            # (float64 values beyond float32's range turn infinite in the cast, hence both).
            opt_valid = ~(self._opt.invalid(opt_raw) | ~np.isfinite(opt_dn).all(axis=0))
        cloud = None
        if self._mask is not None:
            mask = self._mask.rows(top, height)[0]
            floating = np.issubdtype(mask.dtype, np.floating)
            cloud = (mask >= CLOUD_THRESHOLD) if floating else (mask != 0)
        return StripArrays(opt_dn, opt_valid, sar_db, sar_valid, cloud)
