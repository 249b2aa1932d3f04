"""``cloudxfer prepare sen12ms``: SEN12MS as published -> a checked, scene-split data file.

Reads the season folders (S1/S2 twins; the damaged triplet skipped), the toolbox's
``IGBP_probability_labels.pkl`` (restricted unpickler; or a labels CSV) and split lists, and
writes ``DATA.yaml`` with its patch table ``DATA.patches.csv``: the patches on disk with their
label in the chosen class scheme, their scene and the split (the official scene hold-out by
default), and the standardisation of the training tiles as the runs read them. Everything a
run would trip over is checked first: twins, label coverage, class sizes against the labelled
subset, patch against tile size, test tiles overlapping training tiles.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

from datamodules.errors import data_error

__all__ = ["add_arguments", "run"]

CLASS_PATH = "datamodules.Sen12msCloudDataModule"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``prepare sen12ms``."""
    parser.add_argument("--root", type=Path, required=True, help="folder of the season folders")
    parser.add_argument(
        "--labels",
        type=Path,
        required=True,
        help="the toolbox's labels/IGBP_probability_labels.pkl, or a labels CSV",
    )
    parser.add_argument(
        "--splits", type=Path, default=None, help="the toolbox's splits/ folder (official split)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the data file to write (.yaml)")
    parser.add_argument(
        "--scheme",
        choices=("simplified-igbp", "dfc2020"),
        default="simplified-igbp",
        help="class scheme from the IGBP fractions: the toolbox's 10 classes, or DFC2020's 8",
    )
    parser.add_argument("--seasons", nargs="+", default=None, help="season folders (all)")
    parser.add_argument(
        "--max-pairs",
        type=int,
        default=None,
        help="keep a seeded subset of whole scenes holding at most this many patches "
        "(e.g. the paper's 16219)",
    )
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of --max-pairs")
    parser.add_argument("--tiling", choices=("center", "grid"), default="center")
    parser.add_argument("--tile-size", type=int, default=64)
    parser.add_argument(
        "--split",
        choices=("official", "random"),
        default="official",
        help="official: the toolbox's scene hold-out (needs --splits); random: whole scenes "
        "drawn into the test split",
    )
    parser.add_argument("--test-fraction", type=float, default=0.2, help="--split random only")
    parser.add_argument("--split-seed", type=int, default=0, help="--split random only")
    parser.add_argument("--labelled-per-class", type=int, default=20)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument(
        "--drop-small-classes",
        action="store_true",
        help="leave out classes with fewer training tiles than --labelled-per-class "
        "(default: refuse them)",
    )
    parser.add_argument(
        "--allow-unlabelled",
        action="store_true",
        help="keep training patches the labels file does not name (unlabelled pool)",
    )
    parser.add_argument(
        "--allow-overlap",
        action="store_true",
        help="accept test or held-out tiles that overlap training tiles on the ground",
    )
    parser.add_argument("--cloudy-share", type=float, default=0.5, help="share of tiles clouded")
    parser.add_argument("--masks", type=Path, default=None, help="folder of real cloud masks")
    parser.add_argument("--workers", type=int, default=None, help="threads reading files")
    parser.add_argument("--store-dir", default=None, help="packed tile stores (default: cache)")


def _scan(root: Path, seasons: list[str] | None) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Every S2/S1 pair of the season folders, and notes on what was skipped."""
    from datamodules.sen12ms_cloud import KNOWN_BROKEN_PATCHES, resolve_seasons, scan_season

    notes = []
    pairs: list[tuple[Path, Path]] = []
    for folder in resolve_seasons(root, seasons):
        pairs += scan_season(folder)
        for broken in sorted(KNOWN_BROKEN_PATCHES):
            season, _, rest = broken.partition("_s2_")
            scene = rest.split("_p")[0]
            if folder.name == season and (folder / f"s2_{scene}" / f"{broken}.tif").exists():
                notes.append(f"skipped the damaged triplet {season}_*_{rest}")
    return pairs, notes


def _labels(args: argparse.Namespace, keys: list[str], classes: tuple[str, ...]) -> tuple[
    dict[str, int], list[str], list[str]
]:  # fmt: skip
    """Labels of the patches on disk; the patches without a row; those without a class."""
    from datamodules.labels import LabelResolver, read_labels
    from datamodules.sen12ms_toolbox import read_probability_labels

    path: Path = args.labels
    present = set(keys)
    start = time.perf_counter()
    labels: dict[str, int] = {}
    no_class: list[str] = []
    if path.suffix.lower() in (".pkl", ".pickle"):
        fractions = read_probability_labels(path)
        resolver = LabelResolver(classes, path)
        for key in keys:
            if key in fractions:
                index = resolver.from_probabilities(key, list(fractions[key]))
                if index is None:
                    no_class.append(key)
                else:
                    labels[key] = index
        rows = len(fractions)
    else:
        labels = read_labels(path, classes, present)
        rows = len(labels)
    missing = [k for k in keys if k not in labels and k not in no_class]
    print(
        f"labels: {path} ({rows:,} rows read in {time.perf_counter() - start:.1f} s): "
        f"{len(labels):,} of {len(keys):,} patches on disk labelled"
    )
    if missing and not args.allow_unlabelled:
        raise data_error(
            path,
            f"{len(missing):,} of {len(keys):,} patches on disk have no label row (first: "
            f"{missing[0]}); give the labels file of these patches, or --allow-unlabelled "
            "to keep them as unlabelled training patches",
        )
    return labels, missing, no_class


def _official_split(splits: Path | None, keys: list[str]) -> tuple[dict[str, str], str]:
    """Patch -> train/test from the toolbox's lists (patches in neither are left out)."""
    from datamodules.sen12ms_toolbox import (
        find_split_files,
        read_holdout_scenes,
        read_split_list,
        scene_of,
    )

    if splits is None:
        raise data_error(
            "--splits",
            "the official split needs the toolbox's splits/ folder (train_list, test_list, "
            "SEN12MS_holdOutScenes.txt); give --splits DIR, or --split random",
        )
    files = find_split_files(splits)
    if files.test is not None:
        test = set(read_split_list(files.test))
        train = set(read_split_list(files.train)) if files.train is not None else None
        source = f"{files.test.name}" + (f" and {files.train.name}" if files.train else "")
    else:
        assert files.holdout is not None
        scenes = read_holdout_scenes(files.holdout)
        test = {k for k in keys if scene_of(k) in scenes}
        train = None
        source = files.holdout.name
    split_of = {}
    for key in keys:
        if key in test:
            split_of[key] = "test"
        elif train is None or key in train:
            split_of[key] = "train"
    return split_of, f"official scene hold-out ({source} in {splits})"


def run(args: argparse.Namespace) -> int:
    """Prepare SEN12MS; print what was found, checked and written."""
    from cloudxfer.prepare.finish import Prepared, finish
    from cloudxfer.prepare.grouping import random_group_split, subset_groups
    from cloudxfer.prepare.headers import read_headers
    from cloudxfer.runtime import available_cores
    from datamodules.patch_table import PatchEntry
    from datamodules.sen12ms_toolbox import CLASS_SCHEMES, scene_of

    start = time.perf_counter()
    root: Path = args.root.resolve()
    out: Path = args.out.resolve()
    if out.suffix not in (".yaml", ".yml"):
        raise data_error(out, "the data file is a YAML file: give --out DATA.yaml")
    workers = args.workers or available_cores()
    pairs, notes = _scan(root, args.seasons)
    if not pairs:
        raise data_error(root, "no S2/S1 patch pairs found in the season folders")
    keys = [s2.stem for s2, _ in pairs]
    s2_of = {s2.stem: s2 for s2, _ in pairs}
    group = {k: scene_of(k) for k in keys}
    seasons = sorted({g.split("/")[0] for g in group.values()})
    print(
        f"found {len(keys):,} S2/S1 patch pairs in {len(set(group.values())):,} scenes "
        f"({', '.join(seasons)}) under {root}" + "".join(f"; {n}" for n in notes)
    )
    classes = CLASS_SCHEMES[args.scheme]
    labels, missing, no_class = _labels(args, keys, classes)
    if no_class:
        print(
            f"left out {len(no_class):,} patches with no {args.scheme} class (all their "
            "area in classes the scheme leaves out)"
        )
    if args.split == "official":
        split_of, split_text = _official_split(args.splits, keys)
    else:
        split_of = {k: "train" for k in keys}
        split_text = (
            f"random, whole scenes (test fraction {args.test_fraction}, seed {args.split_seed})"
        )
    kept = [k for k in keys if k in split_of and k not in no_class]
    outside = len(keys) - len(no_class) - len(kept)
    if outside:
        print(f"left out {outside:,} patches in neither split list")
    unlabelled_test = [k for k in kept if split_of[k] == "test" and k not in labels]
    kept = [k for k in kept if k not in set(unlabelled_test)]
    if args.max_pairs is not None:
        chosen = subset_groups(
            {k: group[k] for k in kept},
            args.max_pairs,
            args.subset_seed,
            split_of if args.split == "official" else None,
        )
        kept = [k for k in kept if k in chosen]
        print(
            f"subset: {len(kept):,} patches in {len({group[k] for k in kept}):,} whole scenes "
            f"(at most {args.max_pairs:,}, seed {args.subset_seed})"
        )
    if args.split == "random":
        split_of = random_group_split(
            {k: group[k] for k in kept}, args.test_fraction, args.split_seed
        )
    headers = read_headers([s2_of[k] for k in kept], workers, "reading patch headers")
    entries = []
    for key, header in zip(kept, headers, strict=True):
        if header.width != header.height:
            raise data_error(s2_of[key], f"patch is {header.height}x{header.width} px, not square")
        label = classes[labels[key]] if key in labels else ""
        entries.append(
            PatchEntry(
                key, label, group[key], split_of[key], header.crs, header.transform, header.width
            )  # fmt: skip
        )
    from datamodules.clouds import CloudConfig

    clouds = asdict(
        CloudConfig(
            cloudy_share=args.cloudy_share,
            masks_dir=None if args.masks is None else str(args.masks.resolve()),
        )
    )
    fields = ("cloudy_share", "coverage", "thin_share", "masks_dir", "seed")
    return finish(
        args,
        Prepared(
            class_path=CLASS_PATH,
            root=root,
            out=out,
            entries=entries,
            classes=list(classes),
            split_text=split_text,
            files={e.patch: s2_of[e.patch] for e in entries},
            init_extra={"clouds": {k: clouds[k] for k in fields}},
            data_text=f"SEN12MS under {root}, labels {args.labels} ({args.scheme})",
            classes_text="this data file's own (from the IGBP fractions), not the paper's "
            "SEN12MS Cloud classes",
            start=start,
        ),
    )
