"""The end every preparation shares: check classes and overlap, write table, measure, write file."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudxfer.prepare.checks import (
    class_table,
    class_tiles,
    overlaps,
    small_class_error,
    small_classes,
    tile_counts,
)
from cloudxfer.prepare.datafile import content_digest, write_data_file
from cloudxfer.prepare.stats import standardisation_of
from datamodules.errors import data_error
from datamodules.patch_table import PatchEntry, write_patch_table

__all__ = ["Prepared", "finish", "table_path"]


def table_path(out: Path) -> Path:
    """Return the patch table beside a data file (``DATA.yaml`` -> ``DATA.patches.csv``)."""
    return out.with_name(f"{out.stem}.patches.csv")


@dataclass
class Prepared:
    """What a preparation found, ready to be checked and written.

    Attributes:
        class_path: The datamodule class of the data file.
        root: The data root.
        out: The data file to write.
        entries: The patch table's rows (labels as class names).
        classes: The class scheme, in index order.
        split_text: How the split was made (named in the summary and errors).
        files: Patch -> one file of it (its size enters the content digest).
        init_extra: Datamodule arguments of this layout (clouds, optical bands).
        data_text: One phrase for the header: what data, which labels.
        classes_text: Where the classes come from (the header says it).
        start: When the preparation started (``time.perf_counter``).

    """

    class_path: str
    root: Path
    out: Path
    entries: list[PatchEntry]
    classes: list[str]
    split_text: str
    files: dict[str, Path]
    init_extra: dict[str, Any] = field(default_factory=dict)
    data_text: str = ""
    classes_text: str = ""
    start: float = field(default_factory=time.perf_counter)


def finish(args: argparse.Namespace, p: Prepared) -> int:
    """Check class sizes, tile sizes and overlap; write the table, measure, write the data file.

    Raises:
        DataError: A class too small (unless ``--drop-small-classes``), fewer than two classes
            left, no test patch, a patch smaller than a tile, or test tiles overlapping
            training tiles (unless ``--allow-overlap``).

    """
    tiles = tile_counts(p.entries, args.tile_size, args.tiling)
    train, test = class_tiles(p.entries, tiles, "train"), class_tiles(p.entries, tiles, "test")
    small = small_classes(p.classes, train, args.labelled_per_class)
    if small and not args.drop_small_classes:
        raise small_class_error(str(args.labels), small, train, args.labelled_per_class)
    classes = [c for c in p.classes if c not in small]
    if len(classes) < 2:
        raise data_error(
            str(args.labels),
            f"{len(classes)} class(es) keep {args.labelled_per_class} training tiles; a "
            "classifier needs two",
        )
    entries = [e for e in p.entries if e.label not in small]
    n_splits = Counter(e.split for e in entries if e.label)
    if not n_splits["test"]:
        raise data_error(p.split_text, "the test split holds no labelled patch")
    scenes = {s: len({e.group for e in entries if e.split == s}) for s in ("train", "test")}
    print(
        f"split: {p.split_text}: {n_splits['train']:,} labelled training and "
        f"{n_splits['test']:,} test patches ({scenes['train']:,} and {scenes['test']:,} "
        "scenes or groups)"
    )
    per_patch = sorted(set(tiles[e.patch] for e in entries))
    sizes = sorted({e.size for e in entries})
    print(
        f"tiling: {args.tiling}, {args.tile_size} px tiles of "
        f"{'/'.join(map(str, sizes))} px patches ({'/'.join(map(str, per_patch))} a patch)"
    )
    print("\n".join(class_table(classes, train, test, small)))
    absent = [c for c in classes if not test[c]]
    if absent:
        print(f"note: no test tile of {', '.join(absent)} (their accuracy is not measured)")
    _check_overlap(args, entries, p.split_text)
    table = table_path(p.out)
    write_patch_table(entries, table)
    init_args: dict[str, Any] = {
        "root": str(p.root),
        "classes": classes,
        "patches_file": str(table),
        "tile_size": args.tile_size,
        "tiling": args.tiling,
        "val_fraction": args.val_fraction,
        "labelled_per_class": args.labelled_per_class,
        "allow_overlap": bool(args.allow_overlap),
        "predict_subset": "test",
        "sar_nan": "fill",
        **p.init_extra,
    }
    config = {"class_path": p.class_path, "init_args": init_args}
    extra = {"store_dir": args.store_dir} if args.store_dir else {}
    init_args["standardisation"] = standardisation_of(config, **extra)
    digest = content_digest(table, [p.files[e.patch] for e in entries], init_args)
    header = [
        f"Prepared by `{args.command_line.split(' --')[0]}`: do not edit by hand; run it again.",
        f"command: {args.command_line}",
        f"data: {p.data_text}: {len(entries):,} patches, split {p.split_text}",
        f"classes: {p.classes_text}",
        "standardisation: the training tiles as the runs read them "
        "(`cloudxfer stats` recomputes it)",
        f"content: {digest}",
    ]
    write_data_file(p.out, p.class_path, init_args, header)
    std = init_args["standardisation"]
    print(f"standardisation (training tiles as the runs read them): optical mean "
          f"{std['opt_mean']}, std {std['opt_std']}; SAR mean {std['sar_mean']}, "
          f"std {std['sar_std']}")  # fmt: skip
    print(f"wrote {p.out} and {table} (content {digest}) in "
          f"{time.perf_counter() - p.start:.0f} s")  # fmt: skip
    print(f"next: cloudxfer chain --profile smoke --dataset {p.out} --source-root SOURCE --out OUT")
    return 0


def _check_overlap(args: argparse.Namespace, entries: list[PatchEntry], split_text: str) -> None:
    n_bad, n_test, first = overlaps(entries, args.tile_size, args.tiling)
    if not n_bad:
        print(f"overlap check: none of {n_test:,} test tiles overlaps a training tile")
        return
    pair = f"{first[0]} overlaps {first[1]}" if first else ""
    message = f"{n_bad:,} of {n_test:,} test tiles overlap a training tile on the ground ({pair})"
    if not args.allow_overlap:
        raise data_error(
            split_text, f"{message}: split by whole scenes, or pass --allow-overlap to accept it"
        )
    print(f"overlap check: {message} (allowed: --allow-overlap)")
