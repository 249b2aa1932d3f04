"""Small files forged in the exact formats of the public releases (docs: REAL_DATA.md).

- :func:`write_sen12ms_release`: SEN12MS season folders whose S1/S2/LC patches are cut from
  one UTM scene each at half the patch size as stride (neighbours share half their area), S2
  values above 10,000, NaN in S1, the damaged triplet ``ROIs1868_summer_*_146_p202``; and the
  toolbox's ``labels/IGBP_probability_labels.pkl`` (17 IGBP fractions of each patch's LC layer,
  pickled with numpy 1.x names, rows of patches not on disk included) and ``splits/``
  (``train_list``, ``test_list`` as ``.txt`` and ``.pkl``, ``SEN12MS_holdOutScenes.txt``).
- :func:`write_image_folder`: NWPU-RESISC45 / AID folders of JPEGs (one grayscale and one CMYK
  image among them, AID's at 600 px, optional ``__MACOSX`` debris).

The imagery depends on the land cover (per-class reflectance and backscatter), so the smoke
chain has something to learn.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

__all__ = ["Release", "write_image_folder", "write_sen12ms_release"]

IGBP_PALETTE: tuple[int, ...] = (1, 12, 17, 13, 16)
"""IGBP classes (1-based) the forged scenes draw from: Forest, Croplands, Water, Urban, Barren."""
SPRING = "ROIs1158_spring"
SUMMER = "ROIs1868_summer"
DAMAGED = (SUMMER, 146, 202)


@dataclass
class Release:
    """Where the forged release lies and what it holds."""

    root: Path
    labels: Path
    splits: Path
    patches: dict[str, int] = field(default_factory=dict)
    """S2 patch key -> its dominant simplified-IGBP class index (on disk, damaged one left out)."""
    scene_of: dict[str, str] = field(default_factory=dict)
    test: list[str] = field(default_factory=list)


def _write(path: Path, data: np.ndarray, crs: str, transform: Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": str(data.dtype),
        "crs": crs,
        "transform": transform,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _scene(rng: np.random.Generator, blocks: int, block: int) -> np.ndarray:
    """An IGBP map of ``blocks x blocks`` square regions of ``block`` px, classes of the palette."""
    cover = rng.choice(np.asarray(IGBP_PALETTE), size=(blocks, blocks))
    return np.kron(cover, np.ones((block, block), dtype=np.int64)).astype(np.uint16)


def _s2(rng: np.random.Generator, igbp: np.ndarray) -> np.ndarray:
    level = {1: 900, 12: 2200, 17: 400, 13: 3800, 16: 5200}
    base = np.vectorize(level.get)(igbp).astype(np.float64)
    bands = base[None] + 60 * np.arange(13)[:, None, None] + rng.normal(0, 150, (13, *igbp.shape))
    bands[:, :2, :2] = 12000  # saturated pixels: DN above 10,000 occur in the release
    return np.clip(bands, 0, 65535).astype(np.uint16)


def _s1(rng: np.random.Generator, igbp: np.ndarray) -> np.ndarray:
    level = {1: -8.0, 12: -12.0, 17: -22.0, 13: -4.0, 16: -15.0}
    vv = np.vectorize(level.get)(igbp) + rng.normal(0, 1.0, igbp.shape)
    vh = vv - 6.0 + rng.normal(0, 1.0, igbp.shape)
    s1 = np.stack([vv, vh]).astype(np.float32)
    s1[0, 0, :3] = np.nan  # NaN occurs in S1
    return s1


def _fractions(lc: np.ndarray) -> np.ndarray:
    counts = np.bincount(lc.ravel(), minlength=18)[1:18].astype(np.float64)
    return counts / counts.sum()


def write_sen12ms_release(
    base: Path,
    *,
    scenes: int = 5,
    per_side: int = 3,
    patch: int = 64,
    seed: int = 0,
) -> Release:
    """Write SEN12MS-format season folders and the toolbox's label and split files.

    Args:
        base: Folder receiving ``sen12ms/`` (imagery), ``labels/`` and ``splits/``.
        scenes: Spring scenes (the last one is the official hold-out scene).
        per_side: Patches per scene side (``per_side**2`` patches a scene).
        patch: Patch side in px (the release's 256; small here), cut at ``patch // 2`` stride.
        seed: Random seed.

    """
    from datamodules.labels import igbp_to_simplified

    rng = np.random.default_rng(seed)
    root = base / "sen12ms"
    release = Release(root, base / "labels" / "IGBP_probability_labels.pkl", base / "splits")
    stride = patch // 2
    blocks = per_side + 1
    labels: dict[str, np.ndarray] = {}
    scene_list = [(SPRING, k) for k in range(1, scenes + 1)] + [(SUMMER, DAMAGED[1])]
    for index, (season, scene) in enumerate(scene_list):
        crs = f"EPSG:{32631 + index}"  # each scene in its own UTM zone
        origin = Affine(10.0, 0.0, 300000.0 + 5000 * index, 0.0, -10.0, 5000000.0)
        igbp = _scene(rng, blocks, stride)
        s2_scene, s1_scene = _s2(rng, igbp), _s1(rng, igbp)
        number = 0
        for row in range(per_side if season == SPRING else 1):
            for col in range(per_side):
                number = 200 + col if season == SUMMER else number + 1
                top, left = row * stride, col * stride
                window = (slice(top, top + patch), slice(left, left + patch))
                transform = origin @ Affine.translation(left, top)
                name = f"p{number}"
                lc = np.stack([igbp[window]] + [np.ones((patch, patch), np.uint16)] * 3)
                for sensor, data in (
                    ("s2", s2_scene[(slice(None), *window)]),
                    ("s1", s1_scene[(slice(None), *window)]),
                    ("lc", lc),
                ):
                    path = (
                        root
                        / season
                        / f"{sensor}_{scene}"
                        / f"{season}_{sensor}_{scene}_{name}.tif"
                    )
                    _write(path, np.ascontiguousarray(data), crs, transform)
                key = f"{season}_s2_{scene}_{name}"
                labels[f"{key}.tif"] = _fractions(igbp[window])
                if (season, scene, number) == DAMAGED:
                    damaged = root / season / f"s1_{scene}" / f"{season}_s1_{scene}_{name}.tif"
                    damaged.write_bytes(b"II*\x00" + b"\x00" * 64)  # a damaged SAR patch
                    continue
                release.patches[key] = int(np.argmax(igbp_to_simplified(labels[f"{key}.tif"])))
                release.scene_of[key] = f"{season}/{scene}"
    # rows of patches not on disk (other seasons of the full release), one a pure savanna
    labels["ROIs2017_winter_s2_7_p1.tif"] = np.eye(17)[7]
    labels["ROIs2017_winter_s2_7_p2.tif"] = np.eye(17)[0]
    release.labels.parent.mkdir(parents=True)
    # the release's pickle was written under numpy 1.x: its globals name numpy.core
    data = pickle.dumps({k: v.astype(np.float64) for k, v in labels.items()}, protocol=2)
    release.labels.write_bytes(data.replace(b"numpy._core", b"numpy.core"))
    release.splits.mkdir(parents=True)
    (release.splits / "split_lists_pkl").mkdir()
    test = [k for k, s in release.scene_of.items() if s == f"{SPRING}/{scenes}"]
    train = [k for k in release.scene_of if k not in test]
    release.test = sorted(test)
    for name, keys in (("train_list", train), ("test_list", test)):
        files = sorted(f"{k}.tif" for k in keys)
        (release.splits / f"{name}.txt").write_text("\n".join(files) + "\n")
        (release.splits / "split_lists_pkl" / f"{name}.pkl").write_bytes(pickle.dumps(files))
    (release.splits / "SEN12MS_holdOutScenes.txt").write_text(
        f"{SPRING}/s1_{scenes}\n{SUMMER}/s1_43\n"
    )
    return release


def write_image_folder(
    root: Path,
    classes: Sequence[str],
    *,
    per_class: int = 4,
    size: int = 32,
    odd_modes: bool = True,
    macosx: bool = False,
    seed: int = 0,
) -> Path:
    """Write ``<root>/<class>/<class>_<n>.jpg`` JPEGs (NWPU-RESISC45 / AID layout).

    Args:
        root: The data set folder (``NWPU-RESISC45``, ``AID``).
        classes: Class folder names.
        per_class: Images a class.
        size: Image side (NWPU-RESISC45: 256, AID: 600).
        odd_modes: Write the first class's first image as grayscale and its second as CMYK.
        macosx: Add the ``._*.jpg`` resource forks and ``__MACOSX/`` folders (beside ``root``
            and inside it) of a macOS archive.
        seed: Random seed.

    """
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            colour = np.array([40 + 50 * label, 200 - 40 * label, 90 + 20 * (label % 3)])
            pixels = colour[None, None] + rng.integers(-30, 30, size=(size, size, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
            if odd_modes and label == 0 and j == 0:
                image = image.convert("L")
            elif odd_modes and label == 0 and j == 1:
                image = image.convert("CMYK")
            path = folder / f"{name.lower()}_{j + 1:03d}.jpg"
            image.save(path, "JPEG", quality=90)
            if macosx:
                fork = b"\x00\x05\x16\x07" + b"\x00" * 60  # AppleDouble header, not a JPEG
                (folder / f"._{path.name}").write_bytes(fork)
                for mirror in (
                    root.parent / "__MACOSX" / root.name / name,
                    root / "__MACOSX" / name,
                ):
                    mirror.mkdir(parents=True, exist_ok=True)
                    (mirror / f"._{path.name}").write_bytes(fork)
    return root
