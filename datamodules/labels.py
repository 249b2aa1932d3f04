"""Scene-label files: ``patch,label`` / ``patch,index0|index1`` / ``patch,p1..pK`` CSV.

Class names and their count always come from configuration (``classes``); the file only maps
patch names to one of them. Class numbers are read only where the file states their base
(a column named ``index0`` or ``index1``). The toolbox's IGBP probability pickle is read once
by ``cloudxfer prepare`` (``datamodules.sen12ms_toolbox``), never here.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Sequence
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
INDEX_BASES: dict[str, int] = {"index0": 0, "index1": 1}
"""Label-column headers that state the base of class numbers (0-based, 1-based)."""
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

    def from_label(self, patch: str, value: str, base: int | None = None) -> int:
        """Resolve a class name, or a class number when the file states its base.

        Args:
            patch: The patch (named in errors).
            value: The label cell.
            base: 0 or 1 when the file's label column is ``index0`` / ``index1``; None: the
                column holds class names and a bare number is refused (its base is unknown).

        """
        text = value.strip()
        if base is None:
            if text in self._by_name:
                return self._by_name[text]
            if text.casefold() in self._by_folded:
                return self._by_folded[text.casefold()]
        try:
            number = int(text)
        except ValueError:
            if base is not None:
                raise data_error(
                    self.source,
                    f"patch {patch!r}: label {text!r} is not a class number (the column "
                    f"index{base} holds {base}-based class numbers)",
                ) from None
            raise data_error(
                self.source,
                f"patch {patch!r}: label {text!r} is outside the class scheme {self.class_names}",
            ) from None
        if base is None:
            raise data_error(
                self.source,
                f"patch {patch!r}: label {text!r} is a class number, but the file does not say "
                "whether numbers start at 0 or 1: name the label column index0 (0-based) or "
                "index1 (1-based) in a header row, or write class names",
            )
        index = number - base
        if not 0 <= index < len(self.class_names):
            raise data_error(
                self.source,
                f"patch {patch!r}: label index {number} is outside the class scheme "
                f"({base}..{len(self.class_names) - 1 + base}, {base}-based)",
            )
        return index

    def from_probabilities(self, patch: str, values: Sequence[Any]) -> int | None:
        """Resolve class fractions/probabilities (K = number of classes, or 17 IGBP).

        Returns:
            The class index, or None when no configured class has a non-zero share (DFC2020's
            8 classes leave out Savanna and Snow/Ice: a patch of those has no class).

        """
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
            return None
        return int(np.argmax(scores))

    def no_class(self, patch: str) -> DataError:
        """Return the error for a patch on disk whose row gives no configured class a share."""
        return data_error(
            self.source, f"patch {patch!r}: no configured class has a non-zero probability"
        )

    def _igbp_class_columns(self) -> list[int]:
        if self._igbp_columns is None:
            folded = [name.casefold() for name in SIMPLIFIED_IGBP_CLASSES]
            columns = []
            for name in self.class_names:
                if name.casefold() not in folded:
                    raise data_error(
                        self.source,
                        f"17-column IGBP fractions need simplified-IGBP class names "
                        f"{list(SIMPLIFIED_IGBP_CLASSES)}; class {name!r} is not one "
                        "(`cloudxfer prepare sen12ms` writes a data file with them)",
                    )
                columns.append(folded.index(name.casefold()))
            self._igbp_columns = columns
        return self._igbp_columns


def read_labels(
    path: str | Path, class_names: Sequence[str], present: Collection[str] | None = None
) -> dict[str, int]:
    """Read a labels CSV into ``{patch key: class index}``.

    Forms: ``patch,label`` (class names), ``patch,index0`` / ``patch,index1`` (class numbers
    of the stated base; a header row is then required), ``patch,p1..pK`` (argmax; K = number
    of classes, or 17 IGBP fractions converted to simplified IGBP). A header row is recognised
    when its first cell is one of :data:`HEADER_KEYS`. Patch names may carry ``.tif``.

    Args:
        path: The labels file.
        class_names: Configured classes in index order.
        present: Patch keys on disk (None: all rows count). A row of probabilities giving no
            configured class a share is an error for a patch on disk and ignored otherwise.

    Returns:
        Mapping from patch key (no extension) to class index (patches without a class left
        out).

    Raises:
        DataError: Missing/unreadable file, a pickle (read by ``cloudxfer prepare`` only),
            malformed rows, a patch listed twice (naming both lines), class numbers of
            unstated base, or labels outside the class scheme; the message names the file.

    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "labels file not found")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise data_error(
            path,
            "a labels pickle is read once by `cloudxfer prepare sen12ms --labels "
            f"{path.name}`, which writes the labels into the data-set file's patch table; "
            "give that data file (--dataset) instead",
        )
    return _read_csv(path, LabelResolver(class_names, path), present)


def _read_csv(
    path: Path, resolver: LabelResolver, present: Collection[str] | None
) -> dict[str, int]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            # (line number in the file, row): errors name the line an editor shows
            rows = [(reader.line_num, row) for row in reader if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise data_error(path, f"cannot read labels CSV: {exc}") from exc
    base: int | None = None
    if rows and rows[0][1][0].strip().casefold() in HEADER_KEYS:
        header = rows[0][1]
        if len(header) == 2:
            base = INDEX_BASES.get(header[1].strip().casefold())
        rows = rows[1:]
    if not rows:
        raise data_error(path, "labels file holds no rows")
    labels: dict[str, int] = {}
    first_line: dict[str, int] = {}
    seen: dict[str, int | None] = {}
    for line, row in rows:
        if len(row) < 2:
            raise data_error(path, f"line {line} needs 'patch,label' or 'patch,p1..pK': {row}")
        key = patch_key(row[0])
        index: int | None
        if len(row) == 2:
            index = resolver.from_label(key, row[1], base)
        else:
            index = resolver.from_probabilities(key, row[1:])
            if index is None and (present is None or key in present):
                raise resolver.no_class(key)
        if key in first_line:
            # even an identical repeat: a tile listed twice is an edited or merged file gone wrong
            differ = " with different labels" if seen[key] != index else ""
            raise data_error(
                path, f"patch {key!r} is listed twice{differ} (lines {first_line[key]} and {line})"
            )
        first_line[key] = line
        seen[key] = index
        if index is not None:
            labels[key] = index
    return labels


__all__ = [
    "DataError",
    "IGBP_TO_SIMPLIFIED",
    "INDEX_BASES",
    "LabelResolver",
    "SIMPLIFIED_IGBP_CLASSES",
    "igbp_to_simplified",
    "patch_key",
    "read_labels",
]
