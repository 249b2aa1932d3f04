"""What ``prepare`` checks before any training: class sizes, tile sizes, overlap; the summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from datamodules.errors import DataError, data_error
from datamodules.footprints import overlapping_pairs
from datamodules.patch_table import PatchEntry
from datamodules.tiles import Tiling, tile_id, tile_offsets

__all__ = ["class_table", "overlaps", "small_classes", "tile_counts"]


def tile_counts(entries: Sequence[PatchEntry], tile_size: int, tiling: Tiling) -> Counter[str]:
    """Tiles per patch of the table (refusing a patch smaller than a tile)."""
    counts: Counter[str] = Counter()
    for entry in entries:
        if entry.size < tile_size:
            raise data_error(
                entry.patch,
                f"patch is {entry.size} px, smaller than the tile size {tile_size} "
                "(give --tile-size at most the patch size)",
            )
        counts[entry.patch] = len(tile_offsets(entry.size, tile_size, tiling))
    return counts


def class_tiles(entries: Sequence[PatchEntry], tiles: Counter[str], split: str) -> Counter[str]:
    """Labelled tiles per class in one split."""
    counts: Counter[str] = Counter()
    for entry in entries:
        if entry.split == split and entry.label:
            counts[entry.label] += tiles[entry.patch]
    return counts


def small_classes(
    classes: Sequence[str], train_tiles: Counter[str], labelled_per_class: int
) -> list[str]:
    """Classes with fewer training tiles than the labelled subset draws."""
    return [c for c in classes if train_tiles[c] < max(labelled_per_class, 1)]


def small_class_error(
    source: str, classes: Sequence[str], train_tiles: Counter[str], labelled_per_class: int
) -> DataError:
    """Return the refusal of classes too small for the labelled subset, with their counts."""
    counts = ", ".join(f"{c} ({train_tiles[c]})" for c in classes)
    return data_error(
        source,
        f"class(es) with fewer than labelled_per_class={labelled_per_class} training tiles: "
        f"{counts}; pass --drop-small-classes to leave them out, or lower "
        "--labelled-per-class",
    )


def overlaps(
    entries: Sequence[PatchEntry], tile_size: int, tiling: Tiling
) -> tuple[int, int, tuple[str, str] | None]:
    """Count test tiles whose footprint overlaps a training tile's.

    Returns:
        (overlapping test tiles, test tiles, the first overlapping pair of tile ids or None).

    """
    test = [e for e in entries if e.split == "test" and e.crs]
    train = [e for e in entries if e.split == "train" and e.crs]
    n_test = sum(len(tile_offsets(e.size, tile_size, tiling)) for e in test)
    candidates = overlapping_pairs(
        [e.tile(0, 0, e.size) for e in test], [e.tile(0, 0, e.size) for e in train]
    )
    bad: set[str] = set()
    first: tuple[str, str] | None = None
    for qi, ti in candidates:
        q, t = test[qi], train[ti]
        q_tiles = list(tile_offsets(q.size, tile_size, tiling))
        t_tiles = list(tile_offsets(t.size, tile_size, tiling))
        pairs = overlapping_pairs(
            [q.tile(top, left, tile_size) for _, _, top, left in q_tiles],
            [t.tile(top, left, tile_size) for _, _, top, left in t_tiles],
        )
        for a, b in pairs:
            qid = tile_id(q.patch, q_tiles[a][0], q_tiles[a][1])
            bad.add(qid)
            if first is None:
                first = (qid, tile_id(t.patch, t_tiles[b][0], t_tiles[b][1]))
    return len(bad), n_test, first


def class_table(
    classes: Sequence[str], train: Counter[str], test: Counter[str], dropped: Sequence[str]
) -> list[str]:
    """Lines of the per-class summary: training and test tiles a class, dropped ones marked."""
    width = max(len(c) for c in (*classes, *dropped, "class"))
    lines = [f"  {'class'.ljust(width)}  train tiles  test tiles"]
    for name in (*classes, *dropped):
        note = "  (dropped: too few training tiles)" if name in dropped else ""
        lines.append(f"  {name.ljust(width)}  {train[name]:>11,}  {test[name]:>10,}{note}")
    return lines
