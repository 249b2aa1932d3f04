"""What the two paired (optical + SAR) target datamodules share.

The sample dict, validation with the in-memory tile cache, the split and the dataloaders live
here (tiling and validated reading of a pair: ``datamodules.tiles``); ``sen12ms_cloud`` and
``cloudy_pairs`` only know their folder layout (and whether clouds are pasted).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from datamodules.clouds import CloudLayer, blend, cloud_fraction
from datamodules.errors import data_error
from datamodules.footprints import Footprint, overlapping_pairs
from datamodules.normalisation import (
    NUM_CHANNELS,
    S2_RGB_BANDS,
    SarNanPolicy,
    Standardisation,
    sar_channels,
    scale_s2,
    scaling_constants,
    warn_filled_sar,
)
from datamodules.patch_table import PatchEntry, read_patch_table
from datamodules.progress import Progress
from datamodules.raster import raster_side
from datamodules.runfiles import write_json
from datamodules.sampling import EpochShuffle
from datamodules.source_scenes import SourceScenesDataModule
from datamodules.splits import (
    DEFAULT_LABELLED_PER_CLASS,
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    SPLIT_NAMES,
    UNLABELLED,
    SplitRow,
    SubsetName,
    TileRef,
    holdout_ids,
    make_split,
    read_split_csv,
    subset_ids,
    write_split_csv,
)
from datamodules.store import (
    PackedStore,
    StoreWriter,
    content_key,
    default_store_dir,
    open_or_warn_streaming,
)
from datamodules.tiles import (
    PairReader,
    PairTile,
    PatchRef,
    TileArrays,
    Tiling,
    cut_tile,
    tile_id,
    tile_offsets,
)

TrainSubset = Literal["labelled", "unlabelled", "train"]
SPLIT_FILENAME = "split.csv"
NORMALISATION_FILENAME = "normalisation.json"
MAX_SCAN_THREADS = 8
STORE_CHUNK = 64
"""Patches decoded per chunk of a packed store's build: its memory is one chunk's patches
(a 256-px SEN12MS pair reads as about 0.9 MB), whatever the data set's size."""
POOL_STREAM = 0x706F6F6C
"""Random stream of the ``unlabelled_pool`` draw (``[split_seed, POOL_STREAM]``): a key no
other draw of the split, hold-out or epoch order uses, so sizing the pool changes none of them."""
"""Threads reading patches during validation (GDAL releases the GIL while decoding)."""
Sample = dict[str, Any]


class ScaledTiles(Protocol):
    """Where a dataset gets a tile's scaled arrays from (packed store, memory or disk)."""

    def scaled(self, tile: PairTile) -> tuple[np.ndarray, np.ndarray, float]:
        """Scaled RGB (3, T, T), scaled SAR channels (3, T, T), mask cloud fraction (or NaN)."""
        ...


class CloudLayers(Protocol):
    """Where a dataset gets a tile's cloud from (computed, or read from a packed store)."""

    def layer(self, tile_id: str, size: int) -> CloudLayer | None:
        """Return the tile's cloud layer, or None when the tile stays clear."""
        ...


class DecodedTiles:
    """Scaled arrays from decoded tiles: the in-memory cache, or windowed reads from disk.

    Args:
        reader: Reads tiles not in the cache.
        cache: Decoded tiles by id (None: read from disk on every access).

    """

    def __init__(self, reader: PairReader, cache: Mapping[str, TileArrays] | None) -> None:
        self.reader = reader
        self.cache = cache

    def scaled(self, tile: PairTile) -> tuple[np.ndarray, np.ndarray, float]:
        """Scale one tile (see :class:`ScaledTiles`)."""
        arrays = self.cache[tile.id] if self.cache is not None else self.reader.read_tile(tile)
        fraction = math.nan if arrays.mask is None else cloud_fraction(arrays.mask)
        return scale_s2(arrays.opt_dn), sar_channels(arrays.sar_db), fraction


class StoredTiles:
    """Scaled arrays read from a packed store (memory-mapped; see ``datamodules.store``)."""

    def __init__(self, store: PackedStore) -> None:
        self.opt = store.arrays["opt"]
        self.sar = store.arrays["sar"]
        self.fraction = store.arrays["mask_fraction"]
        self.row_of = {tile[0]: row for row, tile in enumerate(store.meta["tiles"])}

    def scaled(self, tile: PairTile) -> tuple[np.ndarray, np.ndarray, float]:
        """Copy one tile's rows out of the store (see :class:`ScaledTiles`)."""
        row = self.row_of[tile.id]
        return np.array(self.opt[row]), np.array(self.sar[row]), float(self.fraction[row])


class PairedTileDataset(Dataset[Sample]):
    """Paired optical/SAR tiles as sample dicts.

    Samples: ``image_opt`` float32 (3, T, T), ``image_sar`` float32 (3, T, T), ``label``
    int64 (), ``cloud_fraction`` float32 () (NaN when unknown), ``id`` str, ``labelled`` bool
    () (whether the tile is in the labelled subset: methods that train on labels and on
    unlabelled tiles together may read ``label`` only where it is True). With ``clear_ids``
    set, also ``image_opt_clear`` (the optical tile before cloud pasting, standardised alike)
    and ``clear_available`` bool (): the clear twin is served only for the tiles in
    ``clear_ids`` and is NaN elsewhere (so batches of mixed tiles still collate).

    Args:
        tiles: Tiles to serve.
        source: Where the scaled arrays come from (:class:`StoredTiles`, :class:`DecodedTiles`).
        standardisation: Applied after scaling (and after cloud pasting).
        clouds: Cloud layers pasted onto the scaled optical tile (None: no pasting; the cloud
            fraction then comes from the tile's mask, or is NaN).

    """

    def __init__(
        self,
        tiles: Sequence[PairTile],
        source: ScaledTiles,
        standardisation: Standardisation,
        clouds: CloudLayers | None = None,
    ) -> None:
        self.tiles = list(tiles)
        self.source = source
        self.standardisation = standardisation
        self.clouds = clouds
        self.labelled_ids: frozenset[str] = frozenset()
        """Ids of the labelled subset (set by the datamodule)."""
        self.clear_ids: frozenset[str] | None = None
        """Ids whose clear optical twin may be served (None: no ``image_opt_clear`` key)."""

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> Sample:
        tile = self.tiles[index]
        rgb, sar, fraction = self.source.scaled(tile)
        clear = rgb
        if self.clouds is not None:
            layer = self.clouds.layer(tile.id, rgb.shape[-1])
            if layer is None:
                fraction = 0.0
            else:
                rgb, fraction = blend(rgb, layer), layer.fraction
        sample: Sample = {
            "image_opt": torch.from_numpy(self.standardisation.apply_opt(rgb)),
            "image_sar": torch.from_numpy(self.standardisation.apply_sar(sar)),
            "label": torch.tensor(tile.label, dtype=torch.int64),
            "cloud_fraction": torch.tensor(fraction, dtype=torch.float32),
            "id": tile.id,
            "labelled": torch.tensor(tile.id in self.labelled_ids),
        }
        if self.clear_ids is not None:
            # Only pasted clouds have a clear twin (real cloudy files have none).
            available = self.clouds is not None and tile.id in self.clear_ids
            twin = torch.from_numpy(self.standardisation.apply_opt(clear))
            sample["image_opt_clear"] = twin if available else torch.full_like(twin, math.nan)
            sample["clear_available"] = torch.tensor(available)
        return sample


class PairedDataModule(L.LightningDataModule):
    """Split, validation, caching and dataloaders shared by the paired target datamodules.

    Subclasses implement :meth:`_scan` (find patch pairs and their labels), :meth:`_reader`
    and, if needed, :meth:`_make_dataset` and :meth:`_normalisation_extra`.

    Args:
        root: Dataset root.
        classes: Class names in index order.
        standardisation: Per-channel mean/std applied after scaling (required).
        labels_file: Labels file, relative to ``root`` unless absolute.
        tile_size: Tile side length in pixels.
        tiling: ``center`` or ``grid``.
        test_fraction: Share of each class's patches in the test split.
        val_fraction: Share of ``train_subset``'s patches held out to validate the stage (its
            own loss on tiles it does not train on; never the test split). Stratified by class
            when the stage trains on labels (``labelled``, ``train``).
        labelled_per_class: Train tiles per class in the labelled subset.
        split_seed: Seed of the labelled draw and of the held-out validation tiles (the
            training seed), and of the test split unless ``test_seed`` is given.
        test_seed: Seed of the train/test split, fixed by the data (profile ``data_seed``) so
            every training seed is scored on the same test tiles; None: ``split_seed``.
        patches_file: A prepared patch table (``cloudxfer prepare`` writes it beside the data
            file: ``datamodules.patch_table``): the patches to read, their labels, scenes and
            fixed train/test split. The data root is then not scanned, ``labels_file`` and
            ``test_fraction`` are not read, each stage's held-out tiles are whole scenes, and
            no test or held-out tile may overlap a training tile on the ground.
        allow_overlap: With ``patches_file``, warn instead of refusing test or held-out tiles
            whose footprint overlaps a training tile's.
        split_file: A ``split.csv`` to reuse instead of drawing a split.
        train_subset: What the train loader serves.
        clear_twins: Add ``image_opt_clear`` (the optical tile before cloud pasting) to the
            samples, available for the labelled tiles (adaptation of a restoration model) and
            the test tiles (image-quality scores) only, never for the unlabelled training
            tiles; NaN (``clear_available`` False) elsewhere and on real cloudy data.
        labelled_stream: Also serve the labelled tiles of the stage's training tiles as a
            second stream: the train loader is then Lightning's ``CombinedLoader`` of
            ``{"target": <train_subset batch>, "labelled": <labelled batch>}`` (cycling the
            shorter), for methods that pair labelled and unlabelled batches (DSAN).
        source_stream: Root of source-domain optical images (an image folder, as
            ``SourceScenesDataModule`` reads it) to serve beside the train batches, unpaired:
            the train loader is then Lightning's ``CombinedLoader`` with a ``"source"``
            stream (and the train batches under ``"target"``) for methods that translate
            between the target tiles and the source domain (CycIT's pre-training). The images
            are resized to ``tile_size``, flipped at random and standardised with this data
            set's *optical* standardisation, so they live where the target's optical tiles
            (and f_S's inputs) do. None: no source stream.
        unlabelled_pool: Keep only this many of the stage's unlabelled training tiles (those of
            ``train_subset`` left after the held-out tiles are removed; labelled ones all stay),
            drawn from ``split_seed``'s own stream (:data:`POOL_STREAM`): nested (a smaller pool
            lies inside every larger one of the same seed), and the test split, the labelled
            draw and the held-out tiles are the same whatever the size. For the unlabelled-pool
            figure (``make fig-pool``). None: every such tile. Refused with ``train_subset``
            ``labelled`` (nothing to draw from).
        predict_subset: What the predict loader serves.
        sar_nan: NaN/inf policy for SAR (``fill`` or ``reject``).
        cache: Keep decoded tiles in memory after validation (when ``store`` is off).
        store: Read tiles from a packed, memory-mapped store built once per content key
            (``datamodules.store``); off: decode every GeoTIFF in every process.
        store_dir: Folder of packed stores (outside the data root, which may be read-only);
            None: ``$CLOUDXFER_STORE_DIR`` or ``~/.cache/cloudxfer/store``.
        batch_size: Batch size of every loader.
        num_workers: DataLoader workers.
        pin_memory: DataLoader ``pin_memory``.

    """

    dataset_name = "paired"

    def __init__(
        self,
        root: str | None = None,
        classes: list[str] | None = None,
        standardisation: Standardisation | None = None,
        labels_file: str = "labels.csv",
        tile_size: int = 64,
        tiling: Tiling = "center",
        test_fraction: float = DEFAULT_TEST_FRACTION,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        labelled_per_class: int = DEFAULT_LABELLED_PER_CLASS,
        split_seed: int | None = None,
        test_seed: int | None = None,
        patches_file: str | None = None,
        allow_overlap: bool = False,
        split_file: str | None = None,
        train_subset: TrainSubset = "unlabelled",
        labelled_stream: bool = False,
        clear_twins: bool = False,
        source_stream: str | None = None,
        unlabelled_pool: int | None = None,
        predict_subset: SubsetName = "test",
        sar_nan: SarNanPolicy = "fill",
        cache: bool = True,
        store: bool | None = None,
        store_dir: str | None = None,
        batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        # None: not given (the training command fills these from the profile and the method's
        # card); a datamodule built in Python gets the usual defaults
        root = _required("root", root)
        split_seed = 0 if split_seed is None else split_seed
        store = True if store is None else store
        batch_size = 32 if batch_size is None else batch_size
        num_workers = 0 if num_workers is None else num_workers
        pin_memory = bool(pin_memory)
        if not classes:
            raise ValueError("classes must name at least one class")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must be unique: {classes}")
        if tile_size < 1:
            raise ValueError(f"tile_size must be >= 1, got {tile_size}")
        _check_choice("tiling", tiling, get_args(Tiling))
        _check_choice("train_subset", train_subset, get_args(TrainSubset))
        _check_choice("predict_subset", predict_subset, get_args(SubsetName))
        _check_choice("sar_nan", sar_nan, ("fill", "reject"))
        if not isinstance(standardisation, Standardisation):
            raise TypeError("standardisation must be a datamodules.normalisation.Standardisation")
        self.root = Path(root)
        self.class_names: list[str] = list(classes)
        self.num_classes: int = len(self.class_names)
        self.standardisation = standardisation
        self.labels_file = labels_file
        self.tile_size = tile_size
        self.tiling: Tiling = tiling
        self.test_fraction = test_fraction
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        self.val_fraction = val_fraction
        self.labelled_per_class = labelled_per_class
        self.split_seed = split_seed
        self.test_seed = test_seed
        self.patches_file = patches_file
        self.allow_overlap = allow_overlap
        self._table: dict[str, PatchEntry] | None = None
        self._checked_val = False
        self.split_file = split_file
        self.train_subset: TrainSubset = train_subset
        self.labelled_stream = labelled_stream
        self.clear_twins = clear_twins
        self.source_stream = source_stream
        self._source_images: SourceScenesDataModule | None = None
        if unlabelled_pool is not None:
            if unlabelled_pool < 1:
                raise ValueError(f"unlabelled_pool must be >= 1 (or None), got {unlabelled_pool}")
            if train_subset == "labelled":
                raise ValueError(
                    f"unlabelled_pool={unlabelled_pool} needs unlabelled training tiles, but "
                    "train_subset is 'labelled'"
                )
        self.unlabelled_pool = unlabelled_pool
        self.predict_subset: SubsetName = predict_subset
        self.sar_nan: SarNanPolicy = sar_nan
        self.cache = cache
        self.store = store
        self.store_dir = Path(store_dir) if store_dir is not None else default_store_dir()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self._tiles: dict[str, PairTile] | None = None
        self._source: ScaledTiles | None = None
        self._tiles_key: str | None = None
        self._rows: list[SplitRow] | None = None
        self._datasets: dict[str, PairedTileDataset] = {}

    # --- what subclasses provide ------------------------------------------------------
    @abstractmethod
    def _scan(self) -> list[PatchRef]:
        """Find the patch pairs on disk and resolve their labels (raise DataError)."""

    @abstractmethod
    def _reader(self) -> PairReader:
        """Return the reader that validates and decodes this layout's pairs."""

    def _make_dataset(self, tiles: Sequence[PairTile]) -> PairedTileDataset:
        assert self._source is not None
        return PairedTileDataset(tiles, self._source, self.standardisation)

    def _normalisation_extra(self) -> dict[str, Any]:
        return {}

    def _prepare_clouds(self, tile_ids: Sequence[str]) -> None:
        """Prepare cloud layers once the tiles are known (run once in :meth:`setup`)."""

    def _patch_paths(self, patch: str) -> tuple[Path, Path, Path | None]:
        """Return a patch's optical, SAR and (optional) mask files (for a patch table)."""
        raise NotImplementedError(f"{type(self).__name__} cannot read a patch table")

    def _table_refs(self) -> list[PatchRef]:
        """Read the prepared patch table: the patches to read, with their labels.

        Raises:
            DataError: A bad table, or a patch it lists missing from the data root.

        """
        assert self.patches_file is not None
        entries = read_patch_table(self.patches_file, self.class_names)
        self._table = {e.patch: e for e in entries}
        index = {name: i for i, name in enumerate(self.class_names)}
        refs = []
        for entry in entries:
            opt, sar, mask = self._patch_paths(entry.patch)
            for path in (opt, sar):
                if not path.is_file():
                    raise data_error(
                        path,
                        f"file of patch {entry.patch!r} (listed in {self.patches_file}) not "
                        "found: the data root changed since `cloudxfer prepare`; run it again",
                    )
            label = index[entry.label] if entry.label else UNLABELLED
            refs.append(PatchRef(entry.patch, label, opt, sar, mask))
        return refs

    # --- public API ---------------------------------------------------------------------
    @property
    def labels_path(self) -> Path:
        """The labels file (``labels_file`` relative to ``root`` unless absolute)."""
        return self.root / self.labels_file

    @property
    def normalisation(self) -> dict[str, Any]:
        """JSON-serialisable scaling constants, standardisation and SAR NaN policy."""
        constants = scaling_constants()
        constants["sar"]["sar_nan"] = self.sar_nan
        bands = list(self._reader().opt_bands)
        if tuple(bands) != S2_RGB_BANDS:
            constants["optical"]["bands_1based"] = bands
            constants["optical"]["band_names"] = [f"band{b}" for b in bands]
        return {
            "dataset": self.dataset_name,
            **constants,
            "standardisation": self.standardisation.to_dict(),
            "tile_size": self.tile_size,
            "tiling": self.tiling,
            **self._normalisation_extra(),
            **self._source_stream_settings(),
        }

    def _source_stream_settings(self) -> dict[str, Any]:
        """Return what the source stream reads (recorded with the run; {} without one)."""
        if self.source_stream is None:
            return {}
        return {"source_stream": {"root": self.source_stream, "image_size": self.tile_size}}

    def source_images(self) -> SourceScenesDataModule:
        """Return the source stream's images (see ``source_stream``), built once.

        Raises:
            ValueError: No ``source_stream`` is set.

        """
        if self.source_stream is None:
            raise ValueError("no source_stream is set: there are no source images to serve")
        if self._source_images is None:
            self._source_images = SourceScenesDataModule(
                root=self.source_stream,
                mean=list(self.standardisation.opt_mean),
                std=list(self.standardisation.opt_std),
                image_size=self.tile_size,
                val_fraction=0.0,  # every image trains: the stage validates on target tiles
                split_seed=self.split_seed,
                augment=True,
                store=self.store,
                store_dir=str(self.store_dir),
                batch_size=self.batch_size,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
            )
        return self._source_images

    def find_patches(self) -> list[PatchRef]:
        """Return the patch pairs on disk with their labels, reading no pixel.

        Checks what needs no decoding (folders, twins, the labels file); ``cloudxfer prepare``
        starts here.

        Raises:
            DataError: A missing folder or twin, or a bad labels file.

        """
        return self._scan()

    @property
    def split_rows(self) -> list[SplitRow]:
        """The split (after :meth:`setup`)."""
        self.setup()
        assert self._rows is not None
        return list(self._rows)

    def prepare_data(self) -> None:
        """Nothing to download; all scanning happens (once) in :meth:`setup`."""

    def setup(self, stage: str | None = None) -> None:
        """Scan, validate (and cache) every pair and build the split; cheap when repeated.

        Raises:
            DataError: On any bad input, before training starts.

        """
        if self._rows is not None:
            return
        refs = self._scan()
        self._tiles_key = self._content_key(refs)
        stored = self._open_store(refs) if self.store else None
        if stored is not None:
            tiles, self._source, replaced = stored
        else:
            tiles, cache, replaced = self._validate(refs, keep=self.cache)
            self._source = DecodedTiles(self._reader(), cache)
        warn_filled_sar(replaced)
        self._prepare_clouds(list(tiles))
        table = self._table
        labels = str(self.patches_file if table is not None else self.labels_path)
        if self.split_file is not None:
            rows = self._load_split(tiles)
        else:
            refs_for_split = [TileRef(t.id, t.patch, t.label) for t in tiles.values()]
            rows = make_split(
                refs_for_split,
                self.class_names,
                test_fraction=self.test_fraction,
                labelled_per_class=self.labelled_per_class,
                seed=self.split_seed,
                labels_file=labels,
                test_seed=self.test_seed,
                test_patches=None
                if table is None
                else {p for p, e in table.items() if e.split == "test"},
            )
        self._tiles, self._rows = tiles, rows
        self._datasets = {}
        self._checked_val = False
        if table is not None:
            self._check_overlap(subset_ids(rows, "test"), subset_ids(rows, "train"), "test")

    def subset_dataset(self, subset: SubsetName) -> PairedTileDataset:
        """Return the dataset of a subset.

        ``labelled``, ``unlabelled``, ``train`` and ``test`` come from the split; ``fit`` and
        ``val`` are ``train_subset`` without and with the tiles held out for validation;
        ``fit_labelled`` the labelled tiles of ``fit``.
        """
        _check_choice("subset", subset, get_args(SubsetName))
        self.setup()
        if subset in ("fit", "val", "fit_labelled") and not self._checked_val:
            self._checked_val = True
            if self._table is not None:
                self._check_overlap(self._subset_ids("val"), self._subset_ids("fit"), "held-out")
        if subset not in self._datasets:
            assert self._tiles is not None and self._rows is not None
            dataset = self._make_dataset([self._tiles[i] for i in self._subset_ids(subset)])
            dataset.labelled_ids = frozenset(subset_ids(self._rows, "labelled"))
            if self.clear_twins:
                allowed = [*subset_ids(self._rows, "labelled"), *subset_ids(self._rows, "test")]
                dataset.clear_ids = frozenset(allowed)
            self._datasets[subset] = dataset
        return self._datasets[subset]

    def _subset_ids(self, subset: SubsetName) -> list[str]:
        assert self._rows is not None
        if subset == "fit_labelled":
            labelled = set(subset_ids(self._rows, "labelled"))
            return [i for i in self._subset_ids("fit") if i in labelled]
        if subset not in ("fit", "val"):
            return subset_ids(self._rows, subset)
        wanted = set(subset_ids(self._rows, self.train_subset))
        rows = [row for row in self._rows if row.id in wanted]
        stratify = self.train_subset != "unlabelled"
        groups = None if self._table is None else {p: e.group for p, e in self._table.items()}
        held = holdout_ids(rows, self.val_fraction, self.split_seed, stratify, groups)
        if subset == "val":
            return [row.id for row in rows if row.id in held]
        return self._pooled([row.id for row in rows if row.id not in held], len(held))

    def _pooled(self, fit: list[str], n_held: int) -> list[str]:
        """Keep ``unlabelled_pool`` of the fit tiles' unlabelled ones (every labelled one).

        The pool's tiles are the first ``unlabelled_pool`` of one seeded permutation of the
        sorted unlabelled fit ids, so pools of one seed are nested; order is kept.

        Raises:
            DataError: ``unlabelled_pool`` exceeds the unlabelled tiles there are.

        """
        if self.unlabelled_pool is None:
            return fit
        assert self._rows is not None
        labelled = set(subset_ids(self._rows, "labelled"))
        unlabelled = sorted(i for i in fit if i not in labelled)
        if self.unlabelled_pool > len(unlabelled):
            raise data_error(
                self.root,
                f"unlabelled_pool={self.unlabelled_pool} exceeds the {len(unlabelled)} "
                f"unlabelled training tiles of train_subset {self.train_subset!r} (after the "
                f"{n_held} held out for validation); give at most {len(unlabelled)}",
            )
        order = np.random.default_rng([self.split_seed, POOL_STREAM]).permutation(len(unlabelled))
        kept = {unlabelled[i] for i in order[: self.unlabelled_pool]}
        return [i for i in fit if i in labelled or i in kept]

    def _check_overlap(self, queries: Sequence[str], training: Sequence[str], what: str) -> None:
        """Refuse (or with ``allow_overlap`` warn about) tiles overlapping training tiles.

        Patches are compared first; only the tiles of overlapping patches are then compared,
        from the footprints the patch table keeps (patches without a CRS are not compared).
        """
        assert self._tiles is not None and self._table is not None
        table, tiles = self._table, self._tiles

        def by_patch(ids: Sequence[str]) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for tid in ids:
                if table[tiles[tid].patch].crs:
                    found.setdefault(tiles[tid].patch, []).append(tid)
            return found

        query_patches, train_patches = by_patch(queries), by_patch(training)
        qp, tp = sorted(query_patches), sorted(train_patches)
        boxes = [table[p] for p in qp], [table[p] for p in tp]
        candidates = overlapping_pairs(
            [e.tile(0, 0, e.size) for e in boxes[0]], [e.tile(0, 0, e.size) for e in boxes[1]]
        )
        bad: list[tuple[str, str]] = []
        for qi, ti in candidates:
            q_ids, t_ids = query_patches[qp[qi]], train_patches[tp[ti]]
            q_boxes = [self._footprint(tid) for tid in q_ids]
            t_boxes = [self._footprint(tid) for tid in t_ids]
            bad += [(q_ids[a], t_ids[b]) for a, b in overlapping_pairs(q_boxes, t_boxes)]
        if not bad:
            return
        n_bad = len({q for q, _ in bad})
        message = (
            f"{n_bad} of {len(queries)} {what} tile(s) overlap a training tile on the ground "
            f"(first: {bad[0][0]} overlaps {bad[0][1]}): neighbouring SEN12MS patches share "
            "half their area; prepare a scene-grouped split (the default), or pass "
            "--allow-overlap to `cloudxfer prepare` to accept it"
        )
        if not self.allow_overlap:
            raise data_error(str(self.patches_file), message)
        warnings.warn(f"{self.patches_file}: {message} (allowed)", stacklevel=2)

    def _footprint(self, tile_id: str) -> Footprint:
        assert self._tiles is not None and self._table is not None
        tile = self._tiles[tile_id]
        return self._table[tile.patch].tile(tile.top, tile.left, self.tile_size)

    def sample_key(self, subset: SubsetName) -> str:
        """Hash of everything that determines a subset's samples (for caches of model outputs).

        Covers the source files (paths, sizes, mtimes), tiling, scaling and standardisation,
        the cloud settings and seed, and the subset's tile ids in order.
        """
        dataset = self.subset_dataset(subset)
        payload = {
            "tiles": self._tiles_key,
            "normalisation": self.normalisation,
            "ids": [tile.id for tile in dataset.tiles],
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def write_run_files(self, directory: str | Path) -> None:
        """Write ``split.csv`` and ``normalisation.json`` into a run directory (atomically)."""
        directory = Path(directory)
        write_split_csv(self.split_rows, directory / SPLIT_FILENAME)
        write_json(directory / NORMALISATION_FILENAME, self.normalisation)

    def train_dataloader(self) -> DataLoader[Sample] | CombinedLoader:
        """Shuffled loader over ``train_subset`` less the held-out tiles (no ``drop_last``).

        With ``labelled_stream``, paired with a shuffled loader over its labelled tiles; with
        ``source_stream``, with a shuffled loader over the source images (both: all three).
        """
        loader = self._loader("fit", shuffle=True)
        streams: dict[str, DataLoader[Sample]] = {"target": loader}
        if self.labelled_stream:
            streams["labelled"] = self._loader("fit_labelled", shuffle=True)
        if self.source_stream is not None:
            streams["source"] = self.source_images().train_dataloader()
        if len(streams) == 1:
            return loader
        return CombinedLoader(streams, mode="max_size_cycle")

    def val_dataloader(self) -> DataLoader[Sample]:
        """Loader over the tiles held out from ``train_subset`` (empty at ``val_fraction`` 0)."""
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader[Sample]:
        """Loader over the test split."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader[Sample]:
        """Loader over ``predict_subset``."""
        return self._loader(self.predict_subset, shuffle=False)

    # --- internals --------------------------------------------------------------------
    def _loader(self, subset: SubsetName, shuffle: bool) -> DataLoader[Sample]:
        dataset = self.subset_dataset(subset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(dataset, self.split_seed) if shuffle else None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def _store_settings(self) -> dict[str, Any]:
        reader = self._reader()
        return {
            "dataset": self.dataset_name,
            "opt_bands": list(reader.opt_bands),
            "opt_count": reader.opt_count,
            "tile_size": self.tile_size,
            "tiling": self.tiling,
            "sar_nan": self.sar_nan,
            "scaling": scaling_constants(),
        }

    def _content_key(self, refs: Sequence[PatchRef]) -> str:
        files = [
            path
            for ref in refs
            for path in (ref.opt_path, ref.sar_path, ref.mask_path)
            if path is not None
        ]
        return content_key("paired_tiles", self._store_settings(), files)

    def _open_store(
        self, refs: Sequence[PatchRef]
    ) -> tuple[dict[str, PairTile], ScaledTiles, dict[str, int]] | None:
        """Open (or build) the packed store of these patches; None when it cannot be written.

        Returns:
            The tiles, their stored arrays and the SAR values filled per file.

        """
        assert self._tiles_key is not None
        sizes = self._patch_sizes(refs)
        size = self.tile_size
        first_row = [0]
        for side in sizes:
            first_row.append(first_row[-1] + len(tile_offsets(side, size, self.tiling)))
        n = first_row[-1]
        specs = {
            "opt": ((n, NUM_CHANNELS, size, size), "float32"),
            "sar": ((n, NUM_CHANNELS, size, size), "float32"),
            "mask_fraction": ((n,), "float32"),
        }

        def build(writer: StoreWriter) -> dict[str, Any]:
            return self._fill_store(refs, sizes, first_row, writer)

        store = open_or_warn_streaming(
            self.store_dir, self.dataset_name, self._tiles_key, specs, build
        )
        if store is None:
            return None
        by_patch = {ref.patch: ref for ref in refs}
        tiles: dict[str, PairTile] = {}
        for tid, patch, top, left in store.meta["tiles"]:
            ref = by_patch[patch]
            tiles[tid] = PairTile(
                tid, patch, ref.label, ref.opt_path, ref.sar_path, top, left, ref.mask_path
            )
        return tiles, StoredTiles(store), store.meta.get("sar_replaced", {})

    def _patch_sizes(self, refs: Sequence[PatchRef]) -> list[int]:
        """Each patch's side: from the patch table, else from its optical file's header."""
        if self._table is not None:
            return [self._table[ref.patch].size for ref in refs]
        threads = max(1, min(MAX_SCAN_THREADS, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda ref: raster_side(ref.opt_path, "optical patch"), refs))

    def _fill_store(
        self,
        refs: Sequence[PatchRef],
        sizes: Sequence[int],
        first_row: Sequence[int],
        writer: StoreWriter,
    ) -> dict[str, Any]:
        """Validate and scale every patch into the store's rows, chunk by chunk (resumable).

        Memory holds one chunk of decoded patches (:data:`STORE_CHUNK`); each chunk ends with
        a checkpoint an interrupted build resumes from.
        """
        reader = self._reader()
        done = int(writer.state.get("patches", 0))
        replaced: dict[str, int] = dict(writer.state.get("sar_replaced", {}))
        progress = Progress(f"packing {self.dataset_name} tiles (patches)", len(refs), done=done)
        threads = max(1, min(MAX_SCAN_THREADS, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for start in range(done, len(refs), STORE_CHUNK):
                chunk = refs[start : start + STORE_CHUNK]
                opt, sar, fraction = (writer.arrays[k] for k in ("opt", "sar", "mask_fraction"))
                for index, ref, (arrays, n_replaced) in zip(
                    range(start, start + len(chunk)), chunk, pool.map(reader.read_patch, chunk),
                    strict=True,
                ):  # fmt: skip
                    if n_replaced:
                        replaced[str(ref.sar_path)] = n_replaced
                    side = arrays.opt_dn.shape[-1]
                    if side != sizes[index]:
                        raise data_error(
                            ref.opt_path,
                            f"optical patch is {side} px, but {sizes[index]} px when it was "
                            "listed (the file changed; run `cloudxfer prepare` again)",
                        )
                    offsets = tile_offsets(side, self.tile_size, self.tiling)
                    for row, (_, _, top, left) in enumerate(offsets, start=first_row[index]):
                        tile = cut_tile(arrays, top, left, self.tile_size)
                        opt[row] = scale_s2(tile.opt_dn)
                        sar[row] = sar_channels(tile.sar_db)
                        fraction[row] = math.nan if tile.mask is None else cloud_fraction(tile.mask)
                    progress.update()
                del opt, sar, fraction  # the checkpoint maps them afresh
                writer.checkpoint(patches=start + len(chunk), sar_replaced=replaced)
        progress.close()
        tiles = [
            [tile_id(ref.patch, row, col), ref.patch, top, left]
            for ref, side in zip(refs, sizes, strict=True)
            for row, col, top, left in tile_offsets(side, self.tile_size, self.tiling)
        ]
        return {"root": str(self.root.resolve()), "tiles": tiles, "sar_replaced": replaced}

    def _validate(
        self, refs: Sequence[PatchRef], keep: bool
    ) -> tuple[dict[str, PairTile], dict[str, TileArrays] | None, dict[str, int]]:
        """Read and validate every pair; returns tiles, decoded tiles (if kept), SAR fills."""
        reader = self._reader()
        cache: dict[str, TileArrays] | None = {} if keep else None
        tiles: dict[str, PairTile] = {}
        replaced: dict[str, int] = {}
        threads = max(1, min(MAX_SCAN_THREADS, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for ref, (arrays, n_replaced) in zip(
                refs, pool.map(reader.read_patch, refs), strict=True
            ):
                if n_replaced:
                    replaced[str(ref.sar_path)] = n_replaced
                size = arrays.opt_dn.shape[-1]
                for row, col, top, left in tile_offsets(size, self.tile_size, self.tiling):
                    tid = tile_id(ref.patch, row, col)
                    tiles[tid] = PairTile(
                        tid,
                        ref.patch,
                        ref.label,
                        ref.opt_path,
                        ref.sar_path,
                        top,
                        left,
                        ref.mask_path,
                    )
                    if cache is not None:
                        cache[tid] = cut_tile(arrays, top, left, self.tile_size)
        return tiles, cache, replaced

    def _load_split(self, tiles: Mapping[str, PairTile]) -> list[SplitRow]:
        assert self.split_file is not None
        path = Path(self.split_file)
        rows = read_split_csv(path, SPLIT_NAMES)
        for row in rows:
            tile = tiles.get(row.id)
            if tile is None:
                raise data_error(path, f"tile {row.id!r} is not in the dataset under {self.root}")
            if tile.label == UNLABELLED and row.label != UNLABELLED:
                raise data_error(
                    self.labels_path,
                    f"patch {tile.patch!r} is not labelled here, but the split file {path} "
                    f"puts its tile {row.id!r} in {row.split!r} with label {row.label}",
                )
            if tile.label != row.label:
                raise data_error(
                    path,
                    f"tile {row.id!r} has label {row.label} here but {tile.label} in the "
                    "labels file",
                )
        return rows


def _required(name: str, value: str | None) -> str:
    """Return a required path argument, or say which option gives it."""
    if value is None:
        raise ValueError(
            f"the data {name} is not set: give --data.init_args.{name} (or --profile.data_root)"
        )
    return value


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
