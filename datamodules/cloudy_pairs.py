"""Real cloudy optical/SAR pairs (Hunan-style): the optical input is already cloudy.

Layout (docs/data_layouts.md section 2)::

    <root>/opt/<id>.tif     # uint16 optical DN (13-band S2 or 3-band R, G, B)
    <root>/sar/<id>.tif     # float32 VV, VH in dB
    <root>/masks/<id>.tif   # optional cloud mask (1 = cloud, or probability in [0, 1])
    <root>/labels.csv       # id,label
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datamodules.errors import data_error
from datamodules.labels import read_labels
from datamodules.normalisation import S2_RGB_BANDS, Standardisation
from datamodules.paired import PairedDataModule
from datamodules.raster import GEOTIFF_SUFFIXES, is_geotiff
from datamodules.splits import UNLABELLED
from datamodules.tiles import PairReader, PatchRef

OPT_FOLDER = "opt"
SAR_FOLDER = "sar"
MASKS_FOLDER = "masks"
DEFAULT_OPT_BANDS: list[int] = list(S2_RGB_BANDS)
NUM_RGB = 3


def _geotiffs(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and is_geotiff(p)}


class CloudyPairsDataModule(PairedDataModule):
    """Real cloudy optical + SAR pairs with scene labels (no cloud pasting).

    ``cloud_fraction`` is the share of mask >= 0.5 when ``masks/<id>.tif`` exists, NaN
    otherwise (such tiles count in neither the cloudy nor the clear subset).

    Args:
        root: Dataset root with ``opt/``, ``sar/``, optional ``masks/`` and the labels file.
        classes: Class names in index order.
        standardisation: Per-channel mean/std applied after scaling (required).
        opt_bands: 1-based optical bands giving R, G, B: ``[4, 3, 2]`` for 13-band S2,
            ``[1, 2, 3]`` for files already holding R, G, B.
        **kwargs: Labels file, tiling, split, loader settings: see
            :class:`~datamodules.paired.PairedDataModule`.

    """

    dataset_name = "cloudy_pairs"

    def __init__(
        self,
        root: str | None = None,
        classes: list[str] | None = None,
        standardisation: Standardisation | None = None,
        opt_bands: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, classes, standardisation, **kwargs)
        bands = list(DEFAULT_OPT_BANDS if opt_bands is None else opt_bands)
        if len(bands) != NUM_RGB or min(bands) < 1:
            raise ValueError(f"opt_bands needs three 1-based band numbers (R, G, B), got {bands}")
        self.opt_bands = bands

    def _reader(self) -> PairReader:
        return PairReader(
            opt_bands=tuple(self.opt_bands),
            opt_count=None,
            tile_size=self.tile_size,
            sar_nan=self.sar_nan,
        )

    def _patch_paths(self, patch: str) -> tuple[Path, Path, Path | None]:
        """Return a pair's optical, SAR and (when present) mask files from its id."""

        def find(folder: str) -> Path:
            for suffix in GEOTIFF_SUFFIXES:
                path = self.root / folder / f"{patch}{suffix}"
                if path.is_file():
                    return path
            return self.root / folder / f"{patch}{GEOTIFF_SUFFIXES[0]}"

        mask = find(MASKS_FOLDER)
        return find(OPT_FOLDER), find(SAR_FOLDER), mask if mask.is_file() else None

    def _scan(self) -> list[PatchRef]:
        if not self.root.is_dir():
            raise data_error(self.root, "dataset root not found")
        if self.patches_file is not None:
            return self._table_refs()
        opt_dir, sar_dir, mask_dir = (self.root / f for f in (OPT_FOLDER, SAR_FOLDER, MASKS_FOLDER))
        for folder in (opt_dir, sar_dir):
            if not folder.is_dir():
                raise data_error(folder, "folder not found")
        opt, sar = _geotiffs(opt_dir), _geotiffs(sar_dir)
        masks = _geotiffs(mask_dir) if mask_dir.is_dir() else {}
        if not opt:
            raise data_error(opt_dir, "no optical GeoTIFFs found")
        for name, path in opt.items():
            if name not in sar:
                raise data_error(
                    path, f"optical image has no SAR twin (expected {sar_dir / path.name})"
                )
        for name, path in sar.items():
            if name not in opt:
                raise data_error(
                    path, f"SAR image has no optical twin (expected {opt_dir / path.name})"
                )
        for name, path in masks.items():
            if name not in opt:
                raise data_error(
                    path, f"cloud mask has no optical twin (expected {opt_dir / path.name})"
                )
        labels = read_labels(self.labels_path, self.class_names, set(opt))
        refs = []
        for name, path in opt.items():
            # an image the labels file does not name joins the unlabelled pool
            label = labels.get(name, UNLABELLED)
            refs.append(PatchRef(name, label, path, sar[name], masks.get(name)))
        return refs

    def _normalisation_extra(self) -> dict[str, Any]:
        return {"clouds": None}
