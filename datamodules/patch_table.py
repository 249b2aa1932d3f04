"""The prepared patch table: every patch's label, scene, split and place on the ground.

``cloudxfer prepare`` writes it beside the data-set file it makes (``DATA.patches.csv``) and
the data file names it as ``patches_file``; every later command reads it instead of scanning
the data root, reading a labels pickle or drawing a test split::

    patch,label,group,split,crs,transform,size
    ROIs1158_spring_s2_1_p30,Forest,ROIs1158_spring/1,train,EPSG:32631,10 0 399960 0 -10 5100000,256

``label`` is a class name of the data file's ``classes`` (empty: an unlabelled training patch),
``group`` the scene (validation tiles are held out by whole groups), ``split`` ``train`` or
``test`` (fixed by the data: the official scene hold-out, or a scene-grouped random draw), and
``crs``/``transform``/``size`` the patch's footprint (the overlap check's input).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from datamodules.errors import data_error
from datamodules.footprints import Footprint, tile_footprint
from datamodules.runfiles import atomic_write_text

__all__ = [
    "PATCH_COLUMNS",
    "TABLE_SPLITS",
    "PatchEntry",
    "read_patch_table",
    "write_patch_table",
]

PATCH_COLUMNS: tuple[str, ...] = ("patch", "label", "group", "split", "crs", "transform", "size")
TABLE_SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class PatchEntry:
    """One row of a patch table.

    Attributes:
        patch: Patch key (SEN12MS: the S2 file stem; real cloudy pairs: the file stem).
        label: Class name, or "" for an unlabelled training patch.
        group: Scene (or other group of patches that may overlap each other).
        split: ``train`` or ``test``.
        crs: The patch's CRS as text ("" when it has none).
        transform: Its affine geotransform ``(a, b, c, d, e, f)``.
        size: Its side in pixels.

    """

    patch: str
    label: str
    group: str
    split: str
    crs: str
    transform: tuple[float, ...]
    size: int

    def tile(self, top: int, left: int, tile_size: int) -> Footprint:
        """Return the ground box of one of its tiles."""
        return tile_footprint(self.crs, self.transform, top, left, tile_size)


def patch_table_text(entries: Iterable[PatchEntry]) -> str:
    """Render entries as the table's CSV text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PATCH_COLUMNS)
    for e in entries:
        transform = " ".join(repr(float(v)) for v in e.transform)
        writer.writerow([e.patch, e.label, e.group, e.split, e.crs, transform, e.size])
    return buffer.getvalue()


def write_patch_table(entries: Iterable[PatchEntry], path: str | Path) -> None:
    """Write a patch table atomically."""
    atomic_write_text(path, patch_table_text(entries))


def read_patch_table(path: str | Path, class_names: Sequence[str]) -> list[PatchEntry]:
    """Read and check a patch table.

    Args:
        path: The table (``patches_file`` of a prepared data file).
        class_names: The data file's classes: every label must be one of them.

    Returns:
        The entries, in file order.

    Raises:
        DataError: Missing file, wrong header, a patch listed twice, a label outside the
            classes, a split other than train/test, an unlabelled test patch or a malformed
            footprint; the message names the file and the line.

    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "patch table not found (run `cloudxfer prepare` again)")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            records = [(reader.line_num, r) for r in reader if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise data_error(path, f"cannot read the patch table: {exc}") from exc
    if header is None or tuple(c.strip() for c in header) != PATCH_COLUMNS:
        raise data_error(path, f"patch table header must be {','.join(PATCH_COLUMNS)}: {header}")
    known = set(class_names)
    seen: dict[str, int] = {}
    entries: list[PatchEntry] = []
    for line, record in records:
        if len(record) != len(PATCH_COLUMNS):
            raise data_error(path, f"line {line}: expected {len(PATCH_COLUMNS)} columns")
        patch, label, group, split, crs, transform, size = (c.strip() for c in record)
        if patch in seen:
            raise data_error(path, f"patch {patch!r} is listed twice (lines {seen[patch]}, {line})")
        seen[patch] = line
        if label and label not in known:
            raise data_error(
                path, f"line {line}: label {label!r} is not one of the classes {list(class_names)}"
            )
        if split not in TABLE_SPLITS:
            raise data_error(path, f"line {line}: split {split!r} is not train or test")
        if split == "test" and not label:
            raise data_error(path, f"line {line}: test patch {patch!r} has no label")
        try:
            numbers = tuple(float(v) for v in transform.split())
            side = int(size)
        except ValueError:
            raise data_error(path, f"line {line}: transform or size is not numeric") from None
        if len(numbers) != 6 or side < 1:
            raise data_error(path, f"line {line}: transform needs 6 numbers and size >= 1")
        entries.append(PatchEntry(patch, label, group or patch, split, crs, numbers, side))
    if not entries:
        raise data_error(path, "patch table holds no patch")
    return entries
