"""Train/test split by patch, the labelled-per-class subset, and ``split.csv`` I/O.

The split is stratified by class: within each class, ``round(test_fraction * n)`` patches
(drawn from ``seed``) go to test, the rest to train, so every class keeps its share in both
splits. All tiles of a patch fall in the same split. Then ``labelled_per_class`` train tiles
per class form the labelled subset; the rest of train is unlabelled.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from datamodules.errors import data_error
from datamodules.runfiles import atomic_write_text

SplitName = Literal["labelled", "unlabelled", "test"]
UNLABELLED = -1
"""Label of a tile the labels file does not name: it joins the unlabelled pool."""
SubsetName = Literal["labelled", "unlabelled", "train", "test", "fit", "val", "fit_labelled"]
"""Split names, ``train`` (labelled + unlabelled), a stage's ``fit`` / ``val`` parts and the
labelled tiles of ``fit``."""
SPLIT_NAMES: tuple[str, ...] = ("labelled", "unlabelled", "test")
TRAIN_SPLITS: tuple[str, ...] = ("labelled", "unlabelled")
SPLIT_COLUMNS: tuple[str, ...] = ("id", "patch", "label", "split")
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_LABELLED_PER_CLASS = 20


@dataclass(frozen=True)
class TileRef:
    """A tile known to a datamodule: its id, the patch it was cut from, its class index."""

    id: str
    patch: str
    label: int


@dataclass(frozen=True)
class SplitRow:
    """One row of ``split.csv``."""

    id: str
    patch: str
    label: int
    split: str


def make_split(
    tiles: Sequence[TileRef],
    class_names: Sequence[str],
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    labelled_per_class: int = DEFAULT_LABELLED_PER_CLASS,
    seed: int = 0,
    labels_file: str | Path = "labels file",
    test_seed: int | None = None,
    test_patches: Collection[str] | None = None,
) -> list[SplitRow]:
    """Split tiles into labelled / unlabelled / test.

    Tiles whose label is :data:`UNLABELLED` (the labels file does not name them) join the
    unlabelled pool; the test split and the labelled draw come from labelled tiles only.

    Args:
        tiles: All tiles (ids unique; tiles of one patch share a label).
        class_names: Configured classes (index order).
        test_fraction: Share of each class's patches that go to test.
        labelled_per_class: Train tiles per class in the labelled subset.
        seed: Seed of the labelled draw (and of the test draw unless ``test_seed`` is given).
        labels_file: Named in the error for a class too small for the labelled subset.
        test_seed: Seed of the train/test draw, the data's own: with it fixed, runs of several
            training seeds are scored on the same test tiles.
        test_patches: The test split's patches, fixed by the data (a prepared patch table's
            scene hold-out); None: drawn at random per class with ``test_fraction``.

    Returns:
        One row per tile, in the order of ``tiles``.

    Raises:
        DataError: When a class has fewer than ``labelled_per_class`` train tiles (an empty
            class in the labelled subset); the message names the class and the labels file.
        ValueError: On bad arguments or inconsistent tiles.

    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    if labelled_per_class < 0:
        raise ValueError(f"labelled_per_class must be >= 0, got {labelled_per_class}")
    patch_label: dict[str, int] = {}
    for tile in tiles:
        if patch_label.setdefault(tile.patch, tile.label) != tile.label:
            raise ValueError(f"tiles of patch {tile.patch!r} carry different labels")
    test_seed = seed if test_seed is None else test_seed
    rng = np.random.default_rng(test_seed)
    split_of: dict[str, str] = {}
    if test_patches is not None:
        fixed = set(test_patches)
        split_of = {p: "test" if p in fixed else "train" for p in patch_label}
    for index in range(len(class_names) if test_patches is None else 0):
        patches = sorted(p for p, label in patch_label.items() if label == index)
        order = rng.permutation(len(patches))
        n_test = int(round(test_fraction * len(patches)))
        for rank, position in enumerate(order):
            split_of[patches[position]] = "test" if rank < n_test else "train"
    # Equal seeds continue the one stream (the splits of earlier versions); another training
    # seed draws the labelled subset from a stream of its own.
    if test_seed != seed:
        rng = np.random.default_rng([seed, 2])
    labelled: set[str] = set()
    for index, name in enumerate(class_names):
        train_ids = sorted(t.id for t in tiles if t.label == index and split_of[t.patch] == "train")
        if len(train_ids) < labelled_per_class:
            raise data_error(
                labels_file,
                f"empty class in the labelled subset: class {name!r} (index {index}) has "
                f"{len(train_ids)} train tile(s), labelled_per_class={labelled_per_class} "
                "needs that many",
            )
        chosen = rng.permutation(len(train_ids))[:labelled_per_class]
        labelled.update(train_ids[i] for i in chosen)
    rows = []
    for tile in tiles:
        if tile.label == UNLABELLED:  # no label at all: the unlabelled pool, never scored
            split = "unlabelled"
        elif split_of[tile.patch] == "test":
            split = "test"
        else:
            split = "labelled" if tile.id in labelled else "unlabelled"
        rows.append(SplitRow(id=tile.id, patch=tile.patch, label=tile.label, split=split))
    return rows


def subset_ids(rows: Iterable[SplitRow], subset: str) -> list[str]:
    """Tile ids of a subset: a split name, or ``"train"`` (labelled + unlabelled)."""
    wanted = TRAIN_SPLITS if subset == "train" else (subset,)
    return [row.id for row in rows if row.split in wanted]


def holdout_ids(
    rows: Sequence[SplitRow],
    fraction: float,
    seed: int,
    stratify: bool,
    groups: Mapping[str, str] | None = None,
) -> set[str]:
    """Ids held out from ``rows`` (one stage's training tiles) to validate that stage.

    Whole patches are held out, so no tile of a held-out patch is trained on. With ``stratify``
    (stages that train on labels anyway) each class keeps its share, at least one patch per
    class with two or more; otherwise the draw ignores labels (unlabelled tiles stay unlabelled).
    With ``groups`` (a patch's scene), whole groups are held out instead
    (:func:`holdout_groups`), so overlapping neighbours never straddle fit and validation.

    Args:
        rows: The training tiles of the stage.
        fraction: Share of the patches held out, in [0, 1).
        seed: Seed of the draw (the split seed).
        stratify: Draw per class.
        groups: Patch -> group (scene); None: every patch its own group.

    Returns:
        The held-out tile ids.

    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {fraction}")
    if fraction == 0.0:
        return set()
    if groups is not None:
        return holdout_groups(rows, fraction, seed, stratify, groups)
    by_class: dict[int, list[str]] = {}
    for row in rows:
        group = by_class.setdefault(row.label if stratify else 0, [])
        if row.patch not in group:
            group.append(row.patch)
    rng = np.random.default_rng(
        [seed, 1]
    )  # a stream of its own: the split's draws stay as they were
    held: set[str] = set()
    for key in sorted(by_class):
        patches = sorted(by_class[key])
        n = int(round(fraction * len(patches)))
        if stratify and len(patches) > 1:
            n = max(n, 1)
        held.update(patches[i] for i in rng.permutation(len(patches))[:n])
    return {row.id for row in rows if row.patch in held}


def holdout_groups(
    rows: Sequence[SplitRow],
    fraction: float,
    seed: int,
    stratify: bool,
    groups: Mapping[str, str],
) -> set[str]:
    """Ids of the whole groups (scenes) held out from ``rows`` to validate a stage.

    Groups are drawn in a seeded order until the held-out patches reach ``round(fraction *
    n)`` (per class with ``stratify``: a class short of its share draws the next group that
    holds it, at least one when the class lies in two or more groups), never taking a class's
    last group (every class keeps training tiles).

    Args:
        rows: The training tiles of the stage.
        fraction: Share of the patches held out, in (0, 1).
        seed: Seed of the draw (the split seed).
        stratify: Fill each class's share.
        groups: Patch -> group.

    Returns:
        The held-out tile ids.

    """
    patch_label: dict[str, int] = {row.patch: row.label for row in rows}
    members: dict[str, list[str]] = {}
    for patch in sorted(patch_label):
        members.setdefault(groups.get(patch, patch), []).append(patch)
    order = sorted(members)
    rng = np.random.default_rng([seed, 1, 1])  # its own stream (not that of patch hold-outs)
    order = [order[i] for i in rng.permutation(len(order))]
    per_group = {g: Counter(patch_label[p] for p in members[g]) for g in order}
    remaining = Counter(patch_label.values())  # patches of each class left to train on
    held: set[str] = set()
    for label in sorted(remaining) if stratify else [None]:
        total = (
            len(patch_label)
            if label is None
            else remaining[label] + sum(per_group[g][label] for g in held)
        )
        wanted = int(round(fraction * total))
        holding = [g for g in order if label is None or per_group[g][label]]
        if stratify and len(holding) > 1:
            wanted = max(wanted, 1)
        done = sum(sum(per_group[g].values()) if label is None else per_group[g][label]
                   for g in held)  # fmt: skip
        for group in holding:
            if done >= wanted:
                break
            if group in held or any(remaining[c] <= n for c, n in per_group[group].items()):
                continue  # held already, or it would take some class's last training tiles
            held.add(group)
            remaining.subtract(per_group[group])
            done += sum(per_group[group].values()) if label is None else per_group[group][label]
    held_patches = {p for g in held for p in members[g]}
    return {row.id for row in rows if row.patch in held_patches}


def split_csv_text(rows: Iterable[SplitRow]) -> str:
    """Render rows as CSV text with the header ``id,patch,label,split``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SPLIT_COLUMNS)
    for row in rows:
        writer.writerow([row.id, row.patch, row.label, row.split])
    return buffer.getvalue()


def write_split_csv(rows: Iterable[SplitRow], path: str | Path) -> None:
    """Write ``split.csv`` atomically."""
    atomic_write_text(path, split_csv_text(rows))


def read_split_csv(path: str | Path, allowed_splits: Sequence[str] = SPLIT_NAMES) -> list[SplitRow]:
    """Read a ``split.csv`` written by :func:`write_split_csv`.

    Args:
        path: The file.
        allowed_splits: Accepted values of the ``split`` column.

    Returns:
        The rows, in file order.

    Raises:
        DataError: Missing file, wrong header, bad label or split value, duplicate id.

    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "split file not found")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            records = [(reader.line_num, r) for r in reader if r]  # errors name file lines
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise data_error(path, f"cannot read split file: {exc}") from exc
    if header is None or tuple(c.strip() for c in header) != SPLIT_COLUMNS:
        raise data_error(path, f"split file header must be {','.join(SPLIT_COLUMNS)}: {header}")
    rows: list[SplitRow] = []
    seen: dict[str, int] = {}
    for line, record in records:
        if len(record) != len(SPLIT_COLUMNS):
            raise data_error(path, f"line {line}: expected 4 columns, got {record}")
        tile_id, patch, label, split = (c.strip() for c in record)
        if split not in allowed_splits:
            raise data_error(path, f"line {line}: split {split!r} not in {list(allowed_splits)}")
        try:
            label_index = int(label)
        except ValueError:
            raise data_error(path, f"line {line}: label {label!r} is not an integer") from None
        if tile_id in seen:
            raise data_error(
                path, f"tile id {tile_id!r} is listed twice (lines {seen[tile_id]} and {line})"
            )
        seen[tile_id] = line
        rows.append(SplitRow(id=tile_id, patch=patch, label=label_index, split=split))
    return rows
