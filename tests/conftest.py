"""Shared fixtures: tiny datasets written in tmp_path in the layouts the datamodules read.

Factories (call them as often as needed, with any parameters):

- ``make_sen12ms(...) -> Sen12msFixture``: SEN12MS layout (season/s1_N, s2_N GeoTIFFs) + labels.
- ``make_cloudy_pairs(...) -> CloudyPairsFixture``: Hunan-style opt/, sar/, masks/ + labels.
- ``make_image_folder(...) -> ImageFolderFixture``: ImageFolder layout (PNG/JPEG/TIFF).
- ``write_geotiff(path, array, dtype=None, *, crs=TEST_CRS, transform=TEST_TRANSFORM) -> Path``:
  one GeoTIFF (every fixture file shares this CRS and grid).

Ready-made defaults: ``sen12ms_dataset`` (3 classes x 30 patches of 64 px, one season),
``cloudy_pairs_dataset`` (3 classes x 30 pairs of 64 px, with masks), ``image_folder_dataset``
(3 classes x 10 images of 32 px), ``identity_standardisation``, ``shared_cloud_masks_dir``
(the real s2cloudless masks; skips when absent).

The synthetic content is class-dependent (per-class reflectance and backscatter levels), so
small models can learn from it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

# pytest's default "prepend" import mode puts tests/ (and each test folder) on sys.path, where
# tests/datamodules and tests/cloudxfer would shadow the real packages as namespace packages.
# Putting the repository root first makes `import datamodules` / `import cloudxfer` resolve to
# the project's packages whatever the import mode.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))
for _name in ("datamodules", "cloudxfer"):
    _module = sys.modules.get(_name)
    if _module is not None and getattr(_module, "__file__", None) is None:
        del sys.modules[_name]  # a namespace shadow imported before this conftest

from datamodules.labels import SIMPLIFIED_IGBP_CLASSES  # noqa: E402
from datamodules.normalisation import Standardisation  # noqa: E402

DEFAULT_CLASSES: tuple[str, ...] = ("Barren", "Dense Forests", "Water")
IGBP_CLASSES_10: tuple[str, ...] = SIMPLIFIED_IGBP_CLASSES
# One IGBP class (1-based) per simplified class, used to write 17-column fractions.
IGBP_REPRESENTATIVE: dict[str, int] = {
    "Forest": 1,
    "Shrubland": 6,
    "Savanna": 8,
    "Grassland": 10,
    "Wetlands": 11,
    "Croplands": 12,
    "Urban/Built-up": 13,
    "Snow/Ice": 15,
    "Barren": 16,
    "Water": 17,
}
SEASON_FOLDERS: tuple[str, ...] = (
    "ROIs1158_spring",
    "ROIs1868_summer",
    "ROIs1970_fall",
    "ROIs2017_winter",
)
TEST_CRS = "EPSG:32632"
PIXEL_M = 10.0
LABEL_FORMS = ("name", "index", "probabilities", "igbp17", "pickle", "pickle_igbp17")


@pytest.fixture(scope="session", autouse=True)
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Packed tile stores of the whole session (and its CLI subprocesses) go under tmp."""
    path = tmp_path_factory.mktemp("store")
    os.environ["CLOUDXFER_STORE_DIR"] = str(path)
    return path


def _unique_dir(base: Path, name: str) -> Path:
    path = base / name
    counter = 1
    while path.exists():
        counter += 1
        path = base / f"{name}{counter}"
    path.mkdir(parents=True)
    return path


def file_digests(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``folder`` (but its ``skip`` subfolders) -> SHA-256 of its bytes.

    Tests compare two of these to assert that a failing command left files as they were.
    """
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] not in skip
    }


TEST_TRANSFORM = Affine(PIXEL_M, 0.0, 500000.0, 0.0, -PIXEL_M, 5000000.0)


def write_geotiff_file(
    path: Path,
    array: np.ndarray,
    dtype: str | None = None,
    *,
    crs: str = TEST_CRS,
    transform: Affine = TEST_TRANSFORM,
) -> Path:
    """Write a (C, H, W) (or (H, W)) array as an uncompressed GeoTIFF (a UTM CRS by default)."""
    data = array[None] if array.ndim == 2 else array
    dtype = dtype or str(data.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
    return path


def _label_rows(
    labels: dict[str, int], classes: Sequence[str], form: str, suffix: str
) -> tuple[list[str], list[list[Any]]]:
    k = len(classes)
    if form == "name":
        return ["patch", "label"], [[p + suffix, classes[i]] for p, i in labels.items()]
    if form == "index":  # class numbers state their base in the header (0-based here)
        return ["patch", "index0"], [[p + suffix, i] for p, i in labels.items()]
    if form == "probabilities":
        rows = []
        for p, i in labels.items():
            probs = np.full(k, 0.3 / max(k - 1, 1))
            probs[i] = 0.7
            rows.append([p + suffix, *[f"{v:.4f}" for v in probs]])
        return ["patch", *[f"p{j + 1}" for j in range(k)]], rows
    if form == "igbp17":
        return ["patch", *[f"p{j + 1}" for j in range(17)]], [
            [p + suffix, *[f"{v:.4f}" for v in _igbp_fractions(classes[i])]]
            for p, i in labels.items()
        ]
    raise ValueError(f"unknown label form {form!r}; use one of {LABEL_FORMS}")


def _igbp_fractions(class_name: str) -> np.ndarray:
    fractions = np.full(17, 0.3 / 16)
    fractions[IGBP_REPRESENTATIVE[class_name] - 1] = 0.7
    return fractions


def write_labels_file(
    directory: Path,
    labels: dict[str, int],
    classes: Sequence[str],
    form: str,
    suffix: str = ".tif",
) -> Path:
    """Write a labels file in one of LABEL_FORMS; returns its path."""
    if form in ("pickle", "pickle_igbp17"):
        if form == "pickle":
            k = len(classes)
            data = {}
            for p, i in labels.items():
                probs = np.full(k, 0.3 / max(k - 1, 1))
                probs[i] = 0.7
                data[p + suffix] = probs
        else:
            data = {p + suffix: _igbp_fractions(classes[i]) for p, i in labels.items()}
        path = directory / "labels.pkl"
        with path.open("wb") as handle:
            pickle.dump(data, handle)
        return path
    header, rows = _label_rows(labels, classes, form, suffix)
    path = directory / "labels.csv"
    lines = [",".join(header)] + [",".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _s2_array(rng: np.random.Generator, label: int, size: int, bands: int) -> np.ndarray:
    level = 600 + 900 * label
    band_offsets = 40 * np.arange(bands)[:, None, None]
    noise = rng.integers(0, 300, size=(bands, size, size))
    return (level + band_offsets + noise).astype(np.uint16)


def _s1_array(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    vv = -6.0 - 4.0 * label + rng.normal(0.0, 1.0, size=(size, size))
    vh = vv - 6.0 - label + rng.normal(0.0, 1.0, size=(size, size))
    return np.stack([vv, vh]).astype(np.float32)


@dataclass
class Sen12msFixture:
    """A tiny SEN12MS-layout dataset written by ``make_sen12ms``."""

    root: Path
    classes: list[str]
    seasons: list[str]
    patch_size: int
    labels: dict[str, int]
    labels_path: Path
    s2_paths: dict[str, Path] = field(default_factory=dict)
    s1_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def patches(self) -> list[str]:
        """Patch keys (S2 file stems), sorted."""
        return sorted(self.labels)

    @property
    def labels_file(self) -> str:
        """The labels file name, as the datamodule's ``labels_file`` argument."""
        return self.labels_path.name


@pytest.fixture
def write_geotiff() -> Callable[..., Path]:
    """Return ``write_geotiff(path, array, dtype=None, *, crs=..., transform=...) -> Path``."""
    return write_geotiff_file


@pytest.fixture
def make_sen12ms(tmp_path: Path) -> Callable[..., Sen12msFixture]:
    """Return a factory writing a tiny SEN12MS-layout dataset.

    Signature::

        make_sen12ms(root=None, *, classes=DEFAULT_CLASSES, patches_per_class=30,
                     patch_size=64, seasons=("ROIs1158_spring",), scenes_per_season=2,
                     label_form="name", s2_bands=13, constant_bands=None, seed=0,
                     with_lc=False) -> Sen12msFixture

    ``patches_per_class`` counts patches over all seasons (spread round robin);
    ``constant_bands`` maps a 1-based S2 band to a constant DN written in every patch;
    ``label_form`` is one of LABEL_FORMS (17-column forms need IGBP class names).
    """

    def make(
        root: Path | None = None,
        *,
        classes: Sequence[str] = DEFAULT_CLASSES,
        patches_per_class: int = 30,
        patch_size: int = 64,
        seasons: Sequence[str] = ("ROIs1158_spring",),
        scenes_per_season: int = 2,
        label_form: str = "name",
        s2_bands: int = 13,
        constant_bands: dict[int, int] | None = None,
        seed: int = 0,
        with_lc: bool = False,
    ) -> Sen12msFixture:
        root = root if root is not None else _unique_dir(tmp_path, "sen12ms")
        root.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        labels: dict[str, int] = {}
        fixture = Sen12msFixture(
            root, list(classes), list(seasons), patch_size, labels, root / "labels.csv"
        )
        counter = 0
        for label in range(len(classes)):
            for _ in range(patches_per_class):
                season = seasons[counter % len(seasons)]
                scene = 1 + (counter // len(seasons)) % scenes_per_season
                number = counter
                counter += 1
                s2_name = f"{season}_s2_{scene}_p{number}"
                s2_path = root / season / f"s2_{scene}" / f"{s2_name}.tif"
                s1_path = root / season / f"s1_{scene}" / f"{season}_s1_{scene}_p{number}.tif"
                s2 = _s2_array(rng, label, patch_size, s2_bands)
                for band, value in (constant_bands or {}).items():
                    s2[band - 1] = value
                write_geotiff_file(s2_path, s2)
                write_geotiff_file(s1_path, _s1_array(rng, label, patch_size))
                if with_lc:
                    lc = np.ones((4, patch_size, patch_size), np.uint16)
                    lc_path = root / season / f"lc_{scene}" / f"{season}_lc_{scene}_p{number}.tif"
                    write_geotiff_file(lc_path, lc)
                labels[s2_name] = label
                fixture.s2_paths[s2_name] = s2_path
                fixture.s1_paths[s2_name] = s1_path
        fixture.labels_path = write_labels_file(root, labels, classes, label_form)
        return fixture

    return make


@pytest.fixture
def sen12ms_dataset(make_sen12ms: Callable[..., Sen12msFixture]) -> Sen12msFixture:
    """3 classes x 30 patches of 64 px in ROIs1158_spring, labels by class name."""
    return make_sen12ms()


@dataclass
class CloudyPairsFixture:
    """A tiny Hunan-style dataset written by ``make_cloudy_pairs``."""

    root: Path
    classes: list[str]
    size: int
    labels: dict[str, int]
    labels_path: Path
    fractions: dict[str, float] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        """Pair ids, sorted."""
        return sorted(self.labels)

    def opt_path(self, pair_id: str) -> Path:
        """Optical file of a pair."""
        return self.root / "opt" / f"{pair_id}.tif"

    def sar_path(self, pair_id: str) -> Path:
        """SAR file of a pair."""
        return self.root / "sar" / f"{pair_id}.tif"

    def mask_path(self, pair_id: str) -> Path:
        """Mask file of a pair."""
        return self.root / "masks" / f"{pair_id}.tif"


@pytest.fixture
def make_cloudy_pairs(tmp_path: Path) -> Callable[..., CloudyPairsFixture]:
    """Return a factory writing a tiny Hunan-style (opt/, sar/, masks/) dataset.

    Signature::

        make_cloudy_pairs(root=None, *, classes=DEFAULT_CLASSES, pairs_per_class=30,
                          size=64, opt_bands=13, masks="uint8", label_form="name",
                          seed=0) -> CloudyPairsFixture

    ``masks``: ``"uint8"`` (0/1), ``"float32"`` (probability) or None (no masks folder).
    ``fractions`` of the result holds each pair's true cloud fraction (mask >= 0.5).
    """

    def make(
        root: Path | None = None,
        *,
        classes: Sequence[str] = DEFAULT_CLASSES,
        pairs_per_class: int = 30,
        size: int = 64,
        opt_bands: int = 13,
        masks: str | None = "uint8",
        label_form: str = "name",
        seed: int = 0,
    ) -> CloudyPairsFixture:
        root = root if root is not None else _unique_dir(tmp_path, "cloudy_pairs")
        rng = np.random.default_rng(seed)
        labels: dict[str, int] = {}
        fixture = CloudyPairsFixture(root, list(classes), size, labels, root / "labels.csv")
        for label in range(len(classes)):
            for j in range(pairs_per_class):
                pair_id = f"tile_{label}_{j:04d}"
                write_geotiff_file(
                    fixture.opt_path(pair_id), _s2_array(rng, label, size, opt_bands)
                )
                write_geotiff_file(fixture.sar_path(pair_id), _s1_array(rng, label, size))
                if masks is not None:
                    cut = int(rng.integers(0, size + 1))
                    prob = np.zeros((size, size), np.float32)
                    prob[:, :cut] = 0.9
                    array = (prob >= 0.5).astype(np.uint8) if masks == "uint8" else prob
                    write_geotiff_file(fixture.mask_path(pair_id), array)
                    fixture.fractions[pair_id] = cut / size
                labels[pair_id] = label
        fixture.labels_path = write_labels_file(root, labels, classes, label_form, suffix="")
        return fixture

    return make


@pytest.fixture
def cloudy_pairs_dataset(
    make_cloudy_pairs: Callable[..., CloudyPairsFixture],
) -> CloudyPairsFixture:
    """3 classes x 30 pairs of 64 px with 13-band optical and uint8 masks."""
    return make_cloudy_pairs()


@dataclass
class ImageFolderFixture:
    """A tiny ImageFolder dataset written by ``make_image_folder``."""

    root: Path
    classes: list[str]
    files: list[Path]


@pytest.fixture
def make_image_folder(tmp_path: Path) -> Callable[..., ImageFolderFixture]:
    """Return a factory writing a tiny ImageFolder dataset.

    Signature::

        make_image_folder(root=None, *, classes=("farmland", "forest", "harbor"),
                          images_per_class=10, size=32, fmt="png",
                          seed=0) -> ImageFolderFixture

    Classes are written as folders; each image is class-coloured RGB noise.
    """

    def make(
        root: Path | None = None,
        *,
        classes: Sequence[str] = ("farmland", "forest", "harbor"),
        images_per_class: int = 10,
        size: int = 32,
        fmt: str = "png",
        seed: int = 0,
    ) -> ImageFolderFixture:
        root = root if root is not None else _unique_dir(tmp_path, "source")
        rng = np.random.default_rng(seed)
        files = []
        for label, name in enumerate(classes):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(images_per_class):
                base = np.array([60 + 60 * label, 200 - 50 * label, 100], dtype=np.int64)
                pixels = base[None, None, :] + rng.integers(-40, 40, size=(size, size, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
                path = folder / f"{name}_{j:03d}.{fmt}"
                image.save(path)
                files.append(path)
        return ImageFolderFixture(root, list(classes), files)

    return make


@pytest.fixture
def image_folder_dataset(
    make_image_folder: Callable[..., ImageFolderFixture],
) -> ImageFolderFixture:
    """3 classes x 10 PNG images of 32 px."""
    return make_image_folder()


@pytest.fixture
def identity_standardisation() -> Standardisation:
    """Mean 0 / std 1: samples hold the scaled values unchanged."""
    return Standardisation.identity()


def shared_dir() -> Path:
    """The shared folder beside the repository (``$CLOUDXFER_SHARED`` overrides)."""
    env = os.environ.get("CLOUDXFER_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_cloud_masks_dir() -> Path:
    """Folder of the real s2cloudless masks (``<shared>/data/cloud_masks``); skips when absent."""
    folder = shared_dir() / "data" / "cloud_masks"
    if not (folder / "s2cloudless_clm.npy").is_file():
        pytest.skip(f"real cloud masks not found under {folder}")
    return folder
