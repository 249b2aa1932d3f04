"""Tiles of paired optical/SAR patches: tiling, validated reading, the cached arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from datamodules.clouds import read_mask_file
from datamodules.errors import data_error
from datamodules.normalisation import (
    S1_DTYPE,
    S1_NUM_BANDS,
    S2_DTYPE,
    SarNanPolicy,
    fix_sar_nonfinite,
)
from datamodules.raster import Georef, check_square, georef_differences, read_georeferenced

Tiling = Literal["center", "grid"]


def tile_offsets(size: int, tile_size: int, tiling: Tiling) -> list[tuple[int, int, int, int]]:
    """Tiles of a square patch.

    Args:
        size: Patch side length (>= tile_size).
        tile_size: Tile side length.
        tiling: ``"center"`` (one centre crop) or ``"grid"`` (every non-overlapping tile).

    Returns:
        ``(row, col, top, left)`` per tile; row/col are -1 for the centre crop.

    """
    if tiling == "center":
        offset = (size - tile_size) // 2
        return [(-1, -1, offset, offset)]
    per_side = size // tile_size
    return [
        (row, col, row * tile_size, col * tile_size)
        for row in range(per_side)
        for col in range(per_side)
    ]


def tile_id(patch: str, row: int, col: int) -> str:
    """Id of a tile: the patch name for the centre crop, ``<patch>_r<row>c<col>`` on a grid."""
    return patch if row < 0 else f"{patch}_r{row}c{col}"


@dataclass(frozen=True)
class PatchRef:
    """A patch pair found on disk, with its label (before reading)."""

    patch: str
    label: int
    opt_path: Path
    sar_path: Path
    mask_path: Path | None = None


@dataclass(frozen=True)
class PairTile:
    """One tile of a patch pair: where to read it and what it is."""

    id: str
    patch: str
    label: int
    opt_path: Path
    sar_path: Path
    top: int
    left: int
    mask_path: Path | None = None


@dataclass(frozen=True)
class TileArrays:
    """Decoded, validated data of one tile (what the cache holds).

    Attributes:
        opt_dn: Optical R, G, B digital numbers (3, T, T), uint16.
        sar_db: VV, VH in dB (2, T, T), float32, finite.
        mask: Cloud mask (T, T) float32 in [0, 1], or None.

    """

    opt_dn: np.ndarray
    sar_db: np.ndarray
    mask: np.ndarray | None


@dataclass(frozen=True)
class PairReader:
    """Reads and validates optical/SAR(/mask) patch pairs.

    Attributes:
        opt_bands: 1-based optical bands giving R, G, B.
        opt_count: Exact band count of optical files, or None (at least ``max(opt_bands)``).
        tile_size: Tile side length (patches must be at least this large).
        sar_nan: NaN/inf policy for SAR.

    """

    opt_bands: tuple[int, ...]
    opt_count: int | None
    tile_size: int
    sar_nan: SarNanPolicy

    def read_patch(
        self, ref: PatchRef, window: tuple[int, int, int, int] | None = None
    ) -> tuple[TileArrays, int]:
        """Read a pair (whole patch, or one window) and validate it.

        Args:
            ref: The patch pair.
            window: ``(top, left, height, width)``; None reads and fully validates the patch
                (band counts, dtypes, sizes, the twins' CRS and geotransform).

        Returns:
            The arrays and the number of SAR values replaced by the NaN policy.

        Raises:
            DataError: Any problem, naming the file at fault.

        """
        min_count = None if self.opt_count is not None else max(self.opt_bands)
        opt, opt_georef = read_georeferenced(
            ref.opt_path,
            what="optical patch",
            bands=self.opt_bands,
            expected_count=self.opt_count,
            min_count=min_count,
            dtype=S2_DTYPE,
            window=window,
        )
        sar, sar_georef = read_georeferenced(
            ref.sar_path,
            what="SAR patch",
            expected_count=S1_NUM_BANDS,
            dtype=S1_DTYPE,
            window=window,
        )
        mask = None
        if ref.mask_path is not None:
            stack = read_mask_file(ref.mask_path)
            if stack.shape[0] != 1:
                raise data_error(
                    ref.mask_path, f"cloud mask holds {stack.shape[0]} masks, expected 1"
                )
            mask = stack[0]
        if window is None:
            size = check_square(opt, ref.opt_path, "optical patch", self.tile_size)
            sar_size = check_square(sar, ref.sar_path, "SAR patch", self.tile_size)
            if sar_size != size:
                raise data_error(
                    ref.sar_path,
                    f"SAR patch is {sar_size} px but its optical twin {ref.opt_path} is {size} px",
                )
            # Twins on different grids would pair pixels of different ground: compared here,
            # where both headers are open anyway (a packed store is built from this check).
            diffs = georef_differences(sar_georef, opt_georef)
            if diffs:
                raise data_error(
                    ref.sar_path,
                    f"SAR patch is not co-registered with its optical twin {ref.opt_path}: "
                    f"{'; '.join(diffs)} (SAR vs optical)",
                )
            if mask is not None and ref.mask_path is not None:
                self._check_mask_grid(ref.mask_path, mask, ref.opt_path, opt_georef, size)
        elif mask is not None:
            top, left, height, width = window
            mask = mask[top : top + height, left : left + width]
        sar, replaced = fix_sar_nonfinite(sar, self.sar_nan, ref.sar_path)
        return TileArrays(opt_dn=opt, sar_db=sar, mask=mask), replaced

    @staticmethod
    def _check_mask_grid(
        mask_path: Path, mask: np.ndarray, opt_path: Path, opt_georef: Georef, size: int
    ) -> None:
        """Refuse a cloud mask whose size, CRS or transform differs from its optical patch's.

        A mask on another grid marks clouds over the wrong ground; its header is read through
        one pixel, since its values were read already.
        """
        if mask.shape != (size, size):
            raise data_error(
                mask_path,
                f"cloud mask is {mask.shape[0]}x{mask.shape[1]} px, its optical patch "
                f"{size}x{size} px",
            )
        _, mask_georef = read_georeferenced(
            mask_path, what="cloud mask", expected_count=1, window=(0, 0, 1, 1)
        )
        diffs = georef_differences(mask_georef, opt_georef)
        if diffs:
            raise data_error(
                mask_path,
                f"cloud mask is not co-registered with its optical patch {opt_path}: "
                f"{'; '.join(diffs)} (mask vs optical)",
            )

    def read_tile(self, tile: PairTile) -> TileArrays:
        """Read one tile with windowed reads (used when the cache is off)."""
        ref = PatchRef(tile.patch, tile.label, tile.opt_path, tile.sar_path, tile.mask_path)
        window = (tile.top, tile.left, self.tile_size, self.tile_size)
        return self.read_patch(ref, window)[0]


def cut_tile(arrays: TileArrays, top: int, left: int, size: int) -> TileArrays:
    """Copy one tile out of decoded patch arrays."""
    rows, cols = slice(top, top + size), slice(left, left + size)
    mask = None if arrays.mask is None else arrays.mask[rows, cols].copy()
    return TileArrays(
        opt_dn=arrays.opt_dn[:, rows, cols].copy(),
        sar_db=arrays.sar_db[:, rows, cols].copy(),
        mask=mask,
    )
