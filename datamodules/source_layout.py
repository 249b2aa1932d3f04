"""Source image folders as their publishers distribute them, and the role a folder plays.

NWPU-RESISC45 and AID unpack to one folder per class (torchvision's ``ImageFolder`` layout);
torchgeo keeps NWPU-RESISC45 one level down (``<root>/NWPU-RESISC45/<class>/``) beside its
split files; archives unpacked on macOS carry ``__MACOSX/`` folders and ``._*`` files. This
module finds the folder that holds the class folders, the class folders themselves (hidden
ones and ``__MACOSX`` skipped) and which data set's role the classes play, by their names.
Light: no torch, so the runner can check a source root before anything trains.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from datamodules.errors import data_error

__all__ = [
    "AID_CLASSES",
    "NWPU_CLASSES",
    "ROLE_CLASSES",
    "ROLE_NAMES",
    "class_folders",
    "is_skipped",
    "resolve_source_root",
    "role_of_classes",
]

NWPU_CLASSES: tuple[str, ...] = (
    "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge",
    "chaparral", "church", "circular_farmland", "cloud", "commercial_area",
    "dense_residential", "desert", "forest", "freeway", "golf_course", "ground_track_field",
    "harbor", "industrial_area", "intersection", "island", "lake", "meadow",
    "medium_residential", "mobile_home_park", "mountain", "overpass", "palace", "parking_lot",
    "railway", "railway_station", "rectangular_farmland", "river", "roundabout", "runway",
    "sea_ice", "ship", "snowberg", "sparse_residential", "stadium", "storage_tank",
    "tennis_court", "terrace", "thermal_power_station", "wetland",
)  # fmt: skip
"""NWPU-RESISC45's 45 class folders (snake_case)."""
AID_CLASSES: tuple[str, ...] = (
    "Airport", "BareLand", "BaseballField", "Beach", "Bridge", "Center", "Church",
    "Commercial", "DenseResidential", "Desert", "Farmland", "Forest", "Industrial", "Meadow",
    "MediumResidential", "Mountain", "Park", "Parking", "Playground", "Pond", "Port",
    "RailwayStation", "Resort", "River", "School", "SparseResidential", "Square", "Stadium",
    "StorageTanks", "Viaduct",
)  # fmt: skip
"""AID's 30 class folders (CamelCase)."""
ROLE_CLASSES: dict[str, tuple[str, ...]] = {"nwpu": NWPU_CLASSES, "aid": AID_CLASSES}
"""Each source role's class folders."""
ROLE_NAMES: dict[str, str] = {"nwpu": "NWPU-RESISC45", "aid": "AID"}
"""Each role's data set, as its archive names its folder."""
SKIPPED_FOLDERS: tuple[str, ...] = ("__MACOSX",)
"""Folders that hold no class (macOS archive metadata)."""


def is_skipped(name: str) -> bool:
    """Whether a file or folder name is hidden (``.x``, ``._x.jpg``) or macOS metadata."""
    return name.startswith(".") or name in SKIPPED_FOLDERS


def class_folders(root: Path) -> list[str]:
    """Return the class folders of ``root``, sorted, hidden ones and ``__MACOSX`` skipped."""
    with os.scandir(root) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not is_skipped(e.name))


def _holds_files(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and not is_skipped(e.name) for e in entries)


def resolve_source_root(root: str | Path) -> Path:
    """Return the folder holding the class folders: ``root``, or torchgeo's one level down.

    A root whose only folder holds folders and no image (torchgeo's ``<root>/NWPU-RESISC45/``)
    is that folder's parent: the class folders are found inside it.

    Raises:
        DataError: The root is missing, or holds fewer than two class folders (a classifier
            of one class learns nothing; the message names the folder it found).

    """
    root = Path(root)
    if not root.is_dir():
        raise data_error(root, "source root not found")
    folders = class_folders(root)
    if len(folders) == 1:
        inner = root / folders[0]
        if class_folders(inner) and not _holds_files(inner):
            root, folders = inner, class_folders(inner)
    if len(folders) < 2:
        found = f"one class folder ({folders[0]!r})" if folders else "no class folder"
        if _holds_files(root):
            found += " but files (a class folder itself?)"
        raise data_error(
            root,
            f"source root holds {found}: give the folder that holds one folder per class "
            "(NWPU-RESISC45/ or AID/ as unpacked)",
        )
    return root


def _folded(name: str) -> str:
    return name.casefold().replace("_", "").replace(" ", "").replace("-", "")


def role_of_classes(classes: Sequence[str]) -> str | None:
    """Return the role (``nwpu``, ``aid``) whose class folders these are, or None.

    Every folder must be one of the role's classes (a subset counts); names compare
    case-, space- and underscore-blind. Names both sets share are told apart by spelling
    (NWPU-RESISC45's ``snake_case``, AID's ``CamelCase``).
    """
    if not classes:
        return None
    folded = {_folded(c) for c in classes}
    roles = [r for r, names in ROLE_CLASSES.items() if folded <= {_folded(n) for n in names}]
    if len(roles) > 1:
        roles = [r for r in roles if set(classes) <= set(ROLE_CLASSES[r])]
    return roles[0] if len(roles) == 1 else None
