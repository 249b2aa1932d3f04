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
from datamodules.normalisation import S2_RGB_BANDS, SarNanPolicy, Standardisation
from datamodules.paired import PairedDataModule, TrainSubset
from datamodules.raster import is_geotiff
from datamodules.splits import DEFAULT_LABELLED_PER_CLASS, DEFAULT_TEST_FRACTION, SubsetName
from datamodules.tiles import PairReader, PatchRef, Tiling

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
        labels_file: ``id,label`` file, relative to ``root`` unless absolute.
        opt_bands: 1-based optical bands giving R, G, B: ``[4, 3, 2]`` for 13-band S2,
            ``[1, 2, 3]`` for files already holding R, G, B.
        tile_size: Tile side length in pixels.
        tiling: ``center`` or ``grid``.
        test_fraction: Share of each class's images in the test split.
        labelled_per_class: Train tiles per class in the labelled subset.
        split_seed: Seed of the split.
        split_file: A ``split.csv`` to reuse instead of drawing a split.
        train_subset: What the train loader serves.
        predict_subset: What the predict loader serves.
        sar_nan: NaN/inf policy for SAR.
        cache: Keep decoded tiles in memory after validation.
        batch_size: Batch size of every loader.
        num_workers: DataLoader workers.
        pin_memory: DataLoader ``pin_memory``.

    """

    dataset_name = "cloudy_pairs"

    def __init__(
        self,
        root: str,
        classes: list[str],
        standardisation: Standardisation,
        labels_file: str = "labels.csv",
        opt_bands: list[int] | None = None,
        tile_size: int = 64,
        tiling: Tiling = "center",
        test_fraction: float = DEFAULT_TEST_FRACTION,
        labelled_per_class: int = DEFAULT_LABELLED_PER_CLASS,
        split_seed: int = 0,
        split_file: str | None = None,
        train_subset: TrainSubset = "unlabelled",
        predict_subset: SubsetName = "test",
        sar_nan: SarNanPolicy = "fill",
        cache: bool = True,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(
            root=root,
            classes=classes,
            standardisation=standardisation,
            labels_file=labels_file,
            tile_size=tile_size,
            tiling=tiling,
            test_fraction=test_fraction,
            labelled_per_class=labelled_per_class,
            split_seed=split_seed,
            split_file=split_file,
            train_subset=train_subset,
            predict_subset=predict_subset,
            sar_nan=sar_nan,
            cache=cache,
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
        )
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

    def _scan(self) -> list[PatchRef]:
        if not self.root.is_dir():
            raise data_error(self.root, "dataset root not found")
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
        labels = read_labels(self.labels_path, self.class_names)
        refs = []
        for name, path in opt.items():
            if name not in labels:
                raise data_error(path, f"image has no label in {self.labels_path}")
            refs.append(PatchRef(name, labels[name], path, sar[name], masks.get(name)))
        return refs

    def _normalisation_extra(self) -> dict[str, Any]:
        return {"clouds": None}
