"""``cloudxfer prepare pairs``: real cloudy optical/SAR pairs (Hunan-style) -> a data file.

The layout of docs/data_layouts.md section 2 (``opt/``, ``sar/``, optional ``masks/`` and a
labels CSV). Pairs carry no scene in their names, so the groups that must not straddle the
split are the connected sets of overlapping footprints (from the optical files' headers); the
test split takes whole groups at random.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from datamodules.errors import data_error

__all__ = ["add_arguments", "class_names_of", "run"]

CLASS_PATH = "datamodules.CloudyPairsDataModule"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``prepare pairs``."""
    parser.add_argument("--root", type=Path, required=True, help="folder holding opt/ and sar/")
    parser.add_argument("--out", type=Path, required=True, help="the data file to write (.yaml)")
    parser.add_argument(
        "--labels", type=Path, default=None, help="labels CSV (default: ROOT/labels.csv)"
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        default=None,
        help="class names in index order (default: the names in the labels file, sorted)",
    )
    parser.add_argument(
        "--opt-bands",
        type=int,
        nargs=3,
        default=[4, 3, 2],
        help="1-based optical bands giving R, G, B: 4 3 2 for 13-band S2, 1 2 3 for RGB files",
    )
    parser.add_argument("--tiling", choices=("center", "grid"), default="center")
    parser.add_argument("--tile-size", type=int, default=64)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--labelled-per-class", type=int, default=20)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--drop-small-classes", action="store_true")
    parser.add_argument(
        "--allow-unlabelled",
        action="store_true",
        help="keep training pairs the labels file does not name (unlabelled pool)",
    )
    parser.add_argument("--allow-overlap", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="threads reading files")
    parser.add_argument("--store-dir", default=None, help="packed tile stores (default: cache)")


def class_names_of(path: Path) -> list[str]:
    """Return the class names a ``id,label`` CSV uses, sorted.

    Raises:
        DataError: The file is missing, holds probabilities or class numbers (give
            ``--classes``).

    """
    from datamodules.labels import HEADER_KEYS

    if not path.is_file():
        raise data_error(path, "labels file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    if rows and rows[0][0].strip().casefold() in HEADER_KEYS:
        rows = rows[1:]
    if any(len(r) != 2 for r in rows):
        raise data_error(path, "holds class probabilities: give the classes (--classes)")
    names = sorted({r[1].strip() for r in rows})
    if any(n.lstrip("-").isdigit() for n in names):
        raise data_error(path, "holds class numbers: give the class names (--classes)")
    return names


def run(args: argparse.Namespace) -> int:
    """Prepare real cloudy pairs; print what was found, checked and written."""
    from cloudxfer.prepare.finish import Prepared, finish
    from cloudxfer.prepare.grouping import footprint_groups, random_group_split
    from cloudxfer.prepare.headers import read_headers
    from cloudxfer.runtime import available_cores
    from datamodules.cloudy_pairs import CloudyPairsDataModule
    from datamodules.footprints import patch_footprint
    from datamodules.normalisation import Standardisation
    from datamodules.patch_table import PatchEntry
    from datamodules.splits import UNLABELLED

    start = time.perf_counter()
    root: Path = args.root.resolve()
    out: Path = args.out.resolve()
    labels: Path = (args.labels or root / "labels.csv").resolve()
    args.labels = labels
    classes = list(args.classes or class_names_of(labels))
    dm = CloudyPairsDataModule(
        root=str(root),
        classes=classes,
        standardisation=Standardisation.identity(),
        labels_file=str(labels),
        opt_bands=list(args.opt_bands),
    )
    refs = sorted(dm.find_patches(), key=lambda r: r.patch)
    missing = [r.patch for r in refs if r.label == UNLABELLED]
    print(f"found {len(refs):,} optical/SAR pairs under {root}; labels: {labels}: "
          f"{len(refs) - len(missing):,} labelled")  # fmt: skip
    if missing and not args.allow_unlabelled:
        raise data_error(
            labels,
            f"{len(missing):,} of {len(refs):,} pairs have no label row (first: {missing[0]}); "
            "pass --allow-unlabelled to keep them as unlabelled training pairs",
        )
    headers = read_headers([r.opt_path for r in refs], args.workers or available_cores(),
                           "reading optical headers")  # fmt: skip
    boxes = [patch_footprint(h.crs, h.transform, h.width) for h in headers]
    groups = footprint_groups([r.patch for r in refs], boxes)
    for ref, header in zip(refs, headers, strict=True):
        if not header.crs:
            groups[ref.patch] = ref.patch  # no place on the ground: a group of its own
    split_of = random_group_split(groups, args.test_fraction, args.split_seed)
    entries = []
    for ref, header in zip(refs, headers, strict=True):
        if header.width != header.height:
            raise data_error(ref.opt_path, f"image is {header.height}x{header.width}, not square")
        label = classes[ref.label] if ref.label != UNLABELLED else ""
        if split_of[ref.patch] == "test" and not label:
            continue  # an unlabelled pair in a test group: neither scored nor trained on
        entries.append(PatchEntry(ref.patch, label, groups[ref.patch], split_of[ref.patch],
                                  header.crs, header.transform, header.width))  # fmt: skip
    print(f"groups: {len(set(groups.values())):,} sets of overlapping footprints")
    return finish(
        args,
        Prepared(
            class_path=CLASS_PATH,
            root=root,
            out=out,
            entries=entries,
            classes=classes,
            split_text=f"random, whole groups (test fraction {args.test_fraction}, "
            f"seed {args.split_seed})",
            files={r.patch: r.opt_path for r in refs},
            init_extra={"opt_bands": list(args.opt_bands)},
            data_text=f"real cloudy pairs under {root}, labels {labels}",
            classes_text="the labels file's (" + ", ".join(classes) + ")",
            start=start,
        ),
    )
