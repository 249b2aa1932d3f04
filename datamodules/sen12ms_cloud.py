"""SEN12MS Cloud: SEN12MS patch pairs, scene labels, clouds pasted at load time.

Layout (docs/data_layouts.md section 1)::

    <root>/ROIs1158_spring/s1_1/ROIs1158_spring_s1_1_p30.tif   # float32 VV, VH (dB)
    <root>/ROIs1158_spring/s2_1/ROIs1158_spring_s2_1_p30.tif   # uint16, 13 bands
    <root>/labels.csv
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datamodules.clouds import DEFAULT_CLOUDS, CloudConfig, CloudPaster, stored_cloud_layers
from datamodules.errors import data_error
from datamodules.labels import read_labels
from datamodules.normalisation import S2_NUM_BANDS, S2_RGB_BANDS, Standardisation
from datamodules.paired import CloudLayers, PairedDataModule, PairedTileDataset
from datamodules.raster import GEOTIFF_SUFFIXES
from datamodules.splits import UNLABELLED
from datamodules.tiles import PairReader, PairTile, PatchRef

SEASONS: tuple[str, ...] = (
    "ROIs1158_spring",
    "ROIs1868_summer",
    "ROIs1970_fall",
    "ROIs2017_winter",
)
"""SEN12MS season folders; ``seasons`` also accepts the short names (``spring``...)."""
SEASON_ALIASES: dict[str, str] = {name.split("_", 1)[1]: name for name in SEASONS}
KNOWN_BROKEN_PATCHES: frozenset[str] = frozenset({"ROIs1868_summer_s2_146_p202"})
"""Patches known to be broken in the public SEN12MS release; skipped when present."""
PATCH_NAME = re.compile(r"^(?P<season>.+)_(?P<sensor>s1|s2)_(?P<scene>\d+)_p(?P<number>\d+)$")
SCENE_FOLDER = re.compile(r"^(?P<sensor>s1|s2)_(?P<scene>\d+)$")
TWIN = {"s1": "s2", "s2": "s1"}
SENSOR_NAMES = {"s1": "S1", "s2": "S2"}


class Sen12msCloudDataset(PairedTileDataset):
    """SEN12MS tiles with clouds pasted onto the optical input.

    Samples: ``image_opt`` float32 (3, T, T) (R, G, B = B04, B03, B02, scaled, clouded,
    standardised), ``image_sar`` float32 (3, T, T) (VV, VH, VV-VH), ``label`` int64 (),
    ``cloud_fraction`` float32 () (0.0 for tiles left clear), ``id`` str.

    Args:
        tiles: Tiles to serve.
        source: Where the scaled arrays come from (packed store, memory or disk).
        standardisation: Applied after scaling and cloud pasting.
        clouds: Cloud layers (stored or computed; None: no pasting, ``cloud_fraction`` NaN).

    """


def resolve_seasons(root: Path, seasons: Sequence[str] | None) -> list[Path]:
    """Season folders to read.

    Args:
        root: Dataset root.
        seasons: Season folder names (or short names); None = every season present.

    Returns:
        Existing season folders.

    Raises:
        DataError: Missing root, a requested season folder missing, or no season at all.

    """
    if not root.is_dir():
        raise data_error(root, "dataset root not found")
    if seasons is None:
        found = [root / name for name in SEASONS if (root / name).is_dir()]
        if not found:
            raise data_error(root, f"no season folder found (expected any of {list(SEASONS)})")
        return found
    folders = []
    for season in seasons:
        folder = root / SEASON_ALIASES.get(season, season)
        if not folder.is_dir():
            raise data_error(folder, "season folder not found")
        folders.append(folder)
    if not folders:
        raise data_error(root, "seasons is empty; give at least one season (or null for all)")
    return folders


def twin_stem(stem: str) -> tuple[str, str] | None:
    """Sensor folder prefix and file stem of a patch's twin (``s1`` <-> ``s2``); None if no match.

    Strings only: this runs for every patch file of every run.
    """
    match = PATCH_NAME.match(stem)
    if match is None:
        return None
    other = TWIN[match["sensor"]]
    return other, f"{match['season']}_{other}_{match['scene']}_p{match['number']}"


def scan_season(folder: Path) -> list[tuple[Path, Path]]:
    """Pair every S2 patch of a season folder with its S1 twin.

    Returns:
        ``(s2_path, s1_path)`` pairs sorted by S2 name.

    Raises:
        DataError: An S2 patch without its S1 twin, or an S1 patch without its S2 twin.

    """
    # One directory listing per scene folder; twins are looked up in it (no stat per file).
    with os.scandir(folder) as entries:
        scenes = sorted(e.name for e in entries if e.is_dir() and SCENE_FOLDER.match(e.name))
    listing: dict[str, list[str]] = {}
    for scene in scenes:
        with os.scandir(folder / scene) as entries:
            listing[scene] = sorted(e.name for e in entries if e.is_file())
    present = {scene: set(names) for scene, names in listing.items()}
    pairs: list[tuple[str, Path, Path]] = []
    for scene in scenes:
        sensor, number = scene.split("_", 1)
        for name in listing[scene]:
            stem, dot, suffix = name.rpartition(".")
            if not dot or f".{suffix.lower()}" not in GEOTIFF_SUFFIXES:
                continue
            twin = twin_stem(stem)
            if twin is None:
                raise data_error(
                    folder / scene / name,
                    "not a SEN12MS patch name (<season>_s1|s2_<scene>_p<N>.tif)",
                )
            other, other_stem = twin
            if stem in KNOWN_BROKEN_PATCHES or other_stem in KNOWN_BROKEN_PATCHES:
                continue
            twin_dir, twin_name = f"{other}_{number}", f"{other_stem}.{suffix}"
            if twin_name not in present.get(twin_dir, ()):
                raise data_error(
                    folder / scene / name,
                    f"{SENSOR_NAMES[sensor]} patch has no {SENSOR_NAMES[TWIN[sensor]]} twin "
                    f"(expected {folder / twin_dir / twin_name})",
                )
            if sensor == "s2":
                pairs.append((stem, folder / scene / name, folder / twin_dir / twin_name))
    return [(s2, s1) for _, s2, s1 in sorted(pairs, key=lambda pair: pair[0])]


class Sen12msCloudDataModule(PairedDataModule):
    """SEN12MS Cloud target domain: cloudy optical RGB + SAR tiles with scene labels.

    ``class_names``/``num_classes`` are set from ``classes`` in ``__init__``; scanning,
    validation (every patch is read once), caching and the split happen in :meth:`setup`.

    Args:
        root: Dataset root holding the season folders and the labels file.
        classes: Class names in index order (the labels file maps patches to these).
        standardisation: Per-channel mean/std applied after scaling (required).
        seasons: Season folders (or short names) to read; None = all present.
        clouds: Cloud pasting settings (``cloudy_share=0`` disables pasting).
        **kwargs: Labels file, tiling, split, loader settings: see
            :class:`~datamodules.paired.PairedDataModule`.

    """

    dataset_name = "sen12ms_cloud"

    def __init__(
        self,
        root: str | None = None,
        classes: list[str] | None = None,
        standardisation: Standardisation | None = None,
        seasons: list[str] | None = None,
        clouds: CloudConfig = DEFAULT_CLOUDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, classes, standardisation, **kwargs)
        self.seasons = None if seasons is None else list(seasons)
        self.clouds = clouds
        self._paster: CloudPaster | None = None
        self._layers: CloudLayers | None = None

    def _reader(self) -> PairReader:
        return PairReader(
            opt_bands=S2_RGB_BANDS,
            opt_count=S2_NUM_BANDS,
            tile_size=self.tile_size,
            sar_nan=self.sar_nan,
        )

    def _patch_paths(self, patch: str) -> tuple[Path, Path, Path | None]:
        """Return a patch's S2 and S1 files from its key (``<season>_s2_<scene>_p<N>``)."""
        match = PATCH_NAME.match(patch)
        if match is None or match["sensor"] != "s2":
            raise data_error(
                str(self.patches_file),
                f"{patch!r} is not an S2 patch key (<season>_s2_<scene>_p<N>)",
            )
        season, scene, number = match["season"], match["scene"], match["number"]
        s2 = self.root / season / f"s2_{scene}" / f"{patch}.tif"
        s1 = self.root / season / f"s1_{scene}" / f"{season}_s1_{scene}_p{number}.tif"
        return s2, s1, None

    def _scan(self) -> list[PatchRef]:
        if self.patches_file is not None:
            if not self.root.is_dir():
                raise data_error(self.root, "dataset root not found")
            refs = self._table_refs()
            self._paster = CloudPaster(self.clouds)
            return refs
        pairs = [
            pair
            for folder in resolve_seasons(self.root, self.seasons)
            for pair in scan_season(folder)
        ]
        if not pairs:
            raise data_error(self.root, "no S2/S1 patch pairs found in the season folders")
        present = {s2_path.stem for s2_path, _ in pairs}
        labels = read_labels(self.labels_path, self.class_names, present)
        refs = []
        for s2_path, s1_path in pairs:
            # a patch the labels file does not name joins the unlabelled pool
            label = labels.get(s2_path.stem, UNLABELLED)
            refs.append(PatchRef(s2_path.stem, label, s2_path, s1_path))
        self._paster = CloudPaster(self.clouds)  # reads masks_dir (if any) now, in setup
        return refs

    def _prepare_clouds(self, tile_ids: Sequence[str]) -> None:
        """Cloud layers: from a packed store (``store: true``) or computed per access."""
        assert self._paster is not None
        stored = None
        if self.store:
            stored = stored_cloud_layers(
                self._paster, list(tile_ids), self.tile_size, self.store_dir
            )
        self._layers = stored if stored is not None else self._paster

    def _make_dataset(self, tiles: Sequence[PairTile]) -> PairedTileDataset:
        assert self._source is not None
        return Sen12msCloudDataset(tiles, self._source, self.standardisation, self._layers)

    def _normalisation_extra(self) -> dict[str, Any]:
        return {"clouds": asdict(self.clouds)}
