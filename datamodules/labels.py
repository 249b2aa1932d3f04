"""Scene-label files: ``patch,label`` / ``patch,p1..pK`` CSV and the IGBP probability pickle.

Class names and their count always come from configuration (``classes``); the file only maps
patch names to one of them.
"""

from __future__ import annotations

import csv
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.errors import DataError, data_error

NUM_IGBP_CLASSES = 17
"""The SEN12MS land-cover layer's IGBP scheme (1-based classes 1..17)."""
SIMPLIFIED_IGBP_CLASSES: tuple[str, ...] = (
    "Forest",
    "Shrubland",
    "Savanna",
    "Grassland",
    "Wetlands",
    "Croplands",
    "Urban/Built-up",
    "Snow/Ice",
    "Barren",
    "Water",
)
"""The 10-class simplified IGBP scheme (DFC2020 drops Savanna and Snow/Ice)."""
IGBP_TO_SIMPLIFIED: tuple[int, ...] = (0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 5, 7, 8, 9)
"""0-based simplified class of each 1-based IGBP class 1..17: Forest = 1..5, Shrubland = 6..7,
Savanna = 8..9, Grassland = 10, Wetlands = 11, Croplands = 12 + 14, Urban = 13, Snow/Ice = 15,
Barren = 16, Water = 17."""
HEADER_KEYS: tuple[str, ...] = ("patch", "id", "name", "file", "filename")
"""First-column header names that mark a header row in a labels CSV."""
PICKLE_SUFFIXES: tuple[str, ...] = (".pkl", ".pickle")
STRIP_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")


def patch_key(name: str) -> str:
    """Normalise a patch/file name from a labels file: basename, no ``.tif``/``.tiff``."""
    base = Path(name.strip()).name
    for suffix in STRIP_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def igbp_to_simplified(fractions: Sequence[float] | np.ndarray) -> np.ndarray:
    """Sum 17 IGBP class fractions into the 10 simplified-IGBP classes.

    Args:
        fractions: 17 fractions (or probabilities) for IGBP classes 1..17.

    Returns:
        float64 array of 10 summed fractions, ordered like :data:`SIMPLIFIED_IGBP_CLASSES`.

    """
    summed = np.zeros(len(SIMPLIFIED_IGBP_CLASSES))
    np.add.at(summed, np.asarray(IGBP_TO_SIMPLIFIED), np.asarray(fractions, dtype=np.float64))
    return summed


class LabelResolver:
    """Turns one row of a labels file into a class index of the configured scheme.

    Args:
        class_names: The configured classes, in index order.
        source: The labels file (named in every error).

    """

    def __init__(self, class_names: Sequence[str], source: str | Path) -> None:
        self.class_names = list(class_names)
        self.source = source
        self._by_name = {name: i for i, name in enumerate(self.class_names)}
        self._by_folded = {name.casefold(): i for i, name in enumerate(self.class_names)}
        self._igbp_columns: list[int] | None = None

    def from_label(self, patch: str, value: str) -> int:
        """Resolve a class name or a 0-based index."""
        text = value.strip()
        if text in self._by_name:
            return self._by_name[text]
        if text.casefold() in self._by_folded:
            return self._by_folded[text.casefold()]
        try:
            index = int(text)
        except ValueError:
            raise data_error(
                self.source,
                f"patch {patch!r}: label {text!r} is outside the class scheme {self.class_names}",
            ) from None
        if not 0 <= index < len(self.class_names):
            raise data_error(
                self.source,
                f"patch {patch!r}: label index {index} is outside the class scheme "
                f"(0..{len(self.class_names) - 1})",
            )
        return index

    def from_probabilities(self, patch: str, values: Sequence[Any]) -> int:
        """Resolve class fractions/probabilities (K = number of classes, or 17 IGBP)."""
        try:
            probs = np.asarray([float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            raise data_error(self.source, f"patch {patch!r}: non-numeric probabilities") from None
        if not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise data_error(self.source, f"patch {patch!r}: probabilities must be finite and >= 0")
        if probs.size == len(self.class_names):
            scores = probs
        elif probs.size == NUM_IGBP_CLASSES:
            scores = igbp_to_simplified(probs)[self._igbp_class_columns()]
        else:
            raise data_error(
                self.source,
                f"patch {patch!r}: {probs.size} probabilities; expected {len(self.class_names)} "
                f"(one per class) or {NUM_IGBP_CLASSES} (IGBP fractions)",
            )
        if float(scores.max(initial=0.0)) <= 0.0:
            raise data_error(
                self.source, f"patch {patch!r}: no configured class has a non-zero probability"
            )
        return int(np.argmax(scores))

    def _igbp_class_columns(self) -> list[int]:
        if self._igbp_columns is None:
            folded = [name.casefold() for name in SIMPLIFIED_IGBP_CLASSES]
            columns = []
            for name in self.class_names:
                if name.casefold() not in folded:
                    raise data_error(
                        self.source,
                        f"17-column IGBP fractions need simplified-IGBP class names "
                        f"{list(SIMPLIFIED_IGBP_CLASSES)}; class {name!r} is not one",
                    )
                columns.append(folded.index(name.casefold()))
            self._igbp_columns = columns
        return self._igbp_columns


def read_labels(path: str | Path, class_names: Sequence[str]) -> dict[str, int]:
    """Read a labels file into ``{patch key: class index}``.

    Forms: CSV ``patch,label`` (class name or 0-based index), CSV ``patch,p1..pK``
    (argmax; K = number of classes, or 17 IGBP fractions converted to simplified IGBP), or a
    pickle mapping patch name -> probability vector. A header row is recognised when its first
    cell is one of :data:`HEADER_KEYS`. Patch names may carry ``.tif``.

    Args:
        path: The labels file.
        class_names: Configured classes in index order.

    Returns:
        Mapping from patch key (no extension) to class index.

    Raises:
        DataError: Missing/unreadable file, malformed rows, a patch listed twice (naming both
            lines, or both names in a pickle), or labels outside the class scheme; the message
            names the file.

    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "labels file not found")
    resolver = LabelResolver(class_names, path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        entries = _read_pickle(path)
        labels: dict[str, int] = {}
        names: dict[str, str] = {}
        for name, probs in entries.items():
            key = patch_key(str(name))
            if key in names:  # two names of one patch (``a`` and ``a.tif``, other folders)
                raise data_error(
                    path, f"patch {key!r} is listed twice (as {names[key]!r} and {str(name)!r})"
                )
            names[key] = str(name)
            labels[key] = resolver.from_probabilities(key, list(np.ravel(probs)))
        return labels
    return _read_csv(path, resolver)


def _read_pickle(path: Path) -> Mapping[Any, Any]:
    # Pickles run code when loaded: only read label files you trust (as with the original
    # IGBP_probability_labels.pkl).
    try:
        with path.open("rb") as handle:
            entries = pickle.load(handle)  # noqa: S301
    except Exception as exc:  # any unpickling failure is a bad file
        raise data_error(path, f"cannot read labels pickle: {exc}") from exc
    if not isinstance(entries, Mapping):
        raise data_error(path, "labels pickle must hold a dict patch name -> probabilities")
    return entries


def _read_csv(path: Path, resolver: LabelResolver) -> dict[str, int]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            # (line number in the file, row): errors name the line an editor shows
            rows = [(reader.line_num, row) for row in reader if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise data_error(path, f"cannot read labels CSV: {exc}") from exc
    if rows and rows[0][1][0].strip().casefold() in HEADER_KEYS:
        rows = rows[1:]
    if not rows:
        raise data_error(path, "labels file holds no rows")
    labels: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for line, row in rows:
        if len(row) < 2:
            raise data_error(path, f"line {line} needs 'patch,label' or 'patch,p1..pK': {row}")
        key = patch_key(row[0])
        if len(row) == 2:
            index = resolver.from_label(key, row[1])
        else:
            index = resolver.from_probabilities(key, row[1:])
        if key in first_line:
            # even an identical repeat: a tile listed twice is an edited or merged file gone wrong
            differ = " with different labels" if labels[key] != index else ""
            raise data_error(
                path, f"patch {key!r} is listed twice{differ} (lines {first_line[key]} and {line})"
            )
        first_line[key] = line
        labels[key] = index
    return labels


__all__ = [
    "DataError",
    "IGBP_TO_SIMPLIFIED",
    "LabelResolver",
    "SIMPLIFIED_IGBP_CLASSES",
    "igbp_to_simplified",
    "patch_key",
    "read_labels",
]
