"""The SEN12MS toolbox's label and split files (``schmitt-muc/SEN12MS``), and its class schemes.

- ``labels/IGBP_probability_labels.pkl``: dict S2 file name -> 17 IGBP class fractions.
- ``splits/train_list`` / ``test_list`` (``.txt``, one S2 file name a line, or ``.pkl``, a
  list of them; also under ``split_lists_pkl/``) and ``SEN12MS_holdOutScenes.txt`` (scene
  folders such as ``ROIs1158_spring/s1_63``).

Read once by ``cloudxfer prepare sen12ms``, pickles through the restricted unpickler of
``datamodules.safe_pickle``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.errors import data_error
from datamodules.labels import NUM_IGBP_CLASSES, SIMPLIFIED_IGBP_CLASSES, patch_key
from datamodules.safe_pickle import load_pickle
from datamodules.sen12ms_cloud import PATCH_NAME

__all__ = [
    "CLASS_SCHEMES",
    "HOLDOUT_FILE",
    "SplitFiles",
    "find_split_files",
    "read_holdout_scenes",
    "read_probability_labels",
    "read_split_list",
    "scene_of",
]

CLASS_SCHEMES: dict[str, tuple[str, ...]] = {
    "simplified-igbp": SIMPLIFIED_IGBP_CLASSES,
    "dfc2020": tuple(c for c in SIMPLIFIED_IGBP_CLASSES if c not in ("Savanna", "Snow/Ice")),
}
"""Class schemes computed from the IGBP fractions: the toolbox's simplified IGBP (10 classes)
and DFC2020's (the same without Savanna and Snow/Ice: 8 classes)."""
HOLDOUT_FILE = "SEN12MS_holdOutScenes.txt"
LIST_NAMES = ("train_list", "test_list")


def scene_of(patch: str) -> str:
    """Return the scene of an S2 patch key (``ROIs1158_spring_s2_1_p30``: ``ROIs1158_spring/1``)."""
    match = PATCH_NAME.match(patch)
    if match is None:
        return patch
    return f"{match['season']}/{match['scene']}"


def read_probability_labels(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``IGBP_probability_labels.pkl``: patch key -> 17 IGBP fractions (float64).

    Raises:
        DataError: Not a dict of names to 17 numbers, a patch named twice, or a pickle naming
            anything but numpy arrays (the restricted unpickler); the message names the file.

    """
    path = Path(path)
    entries = load_pickle(path)
    if not isinstance(entries, Mapping):
        raise data_error(path, "labels pickle must hold a dict patch name -> 17 IGBP fractions")
    labels: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}
    for name, values in entries.items():
        key = patch_key(str(name))
        if key in names:
            raise data_error(
                path, f"patch {key!r} is listed twice (as {names[key]!r} and {str(name)!r})"
            )
        names[key] = str(name)
        try:
            fractions = np.asarray(values, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise data_error(path, f"patch {key!r}: fractions are not numbers") from None
        if fractions.size != NUM_IGBP_CLASSES:
            raise data_error(
                path,
                f"patch {key!r}: {fractions.size} values; IGBP_probability_labels holds "
                f"{NUM_IGBP_CLASSES} fractions a patch",
            )
        labels[key] = fractions
    return labels


def read_split_list(path: str | Path) -> list[str]:
    """Read a toolbox split list (``.txt``: a name a line; ``.pkl``: a list) as patch keys.

    Raises:
        DataError: Unreadable, or a pickle that is not a list of names.

    """
    path = Path(path)
    if path.suffix.lower() == ".pkl":
        names = load_pickle(path)
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise data_error(path, "split pickle must hold a list of S2 file names")
    else:
        try:
            names = path.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise data_error(path, f"cannot read the split list: {exc}") from None
    return [patch_key(n) for n in names]


def read_holdout_scenes(path: str | Path) -> set[str]:
    """Read ``SEN12MS_holdOutScenes.txt`` (``ROIs1158_spring/s1_63`` a line) as scene groups.

    Returns:
        Scenes as :func:`scene_of` names them (``ROIs1158_spring/63``).

    Raises:
        DataError: Unreadable, or a line that is not ``<season>/s1_<scene>``.

    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise data_error(path, f"cannot read the hold-out scenes: {exc}") from None
    scenes = set()
    for number, line in enumerate(lines, start=1):
        season, _, folder = line.strip().strip("/").rpartition("/")
        sensor, _, scene = folder.partition("_")
        if not season or sensor not in ("s1", "s2", "lc") or not scene.isdigit():
            raise data_error(path, f"line {number}: {line!r} is not <season>/s1_<scene>")
        scenes.add(f"{season}/{scene}")
    return scenes


@dataclass(frozen=True)
class SplitFiles:
    """The toolbox's split files found in a folder (None where absent)."""

    train: Path | None
    test: Path | None
    holdout: Path | None


def find_split_files(folder: str | Path) -> SplitFiles:
    """Find ``train_list``, ``test_list`` (``.txt`` before ``.pkl``) and the hold-out scenes.

    Looks in ``folder`` and its ``split_lists_pkl/`` (the toolbox's layout).

    Raises:
        DataError: The folder is missing, or holds neither a test list nor the hold-out scenes.

    """
    folder = Path(folder)
    if not folder.is_dir():
        raise data_error(folder, "splits folder not found")
    found: dict[str, Path | None] = {}
    for name in LIST_NAMES:
        candidates = [
            folder / f"{name}.txt",
            folder / f"{name}.pkl",
            folder / "split_lists_pkl" / f"{name}.pkl",
        ]
        found[name] = next((p for p in candidates if p.is_file()), None)
    holdout = folder / HOLDOUT_FILE
    files = SplitFiles(
        found["train_list"], found["test_list"], holdout if holdout.is_file() else None
    )
    if files.test is None and files.holdout is None:
        raise data_error(
            folder,
            f"holds neither test_list.txt/.pkl nor {HOLDOUT_FILE} (the SEN12MS toolbox's "
            "splits/ folder)",
        )
    return files
