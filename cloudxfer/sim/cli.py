"""Command line: ``synth target|source|scene ...`` (argv excludes ``synth``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from cloudxfer.sim.generate import generate_source, generate_target
from cloudxfer.sim.large_scene import DEFAULT_CLOUD_COVER, generate_scene
from cloudxfer.sim.record import SIMULATION_RECORD
from cloudxfer.sim.schemes import SCHEMES, SOURCE_ROLES
from datamodules.runfiles import write_json


def build_parser() -> argparse.ArgumentParser:
    """Argument parser for the three generators."""
    parser = argparse.ArgumentParser(
        prog="synth", description="Write simulated target (S1/S2) or source (aerial RGB) sets."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {
        "target": "SEN12MS-layout (or Hunan-style cloudy) S1/S2 pairs",
        "source": "ImageFolder of cloud-free aerial RGB images",
        "scene": "one large S1/S2 scene pair with a known class layout, to map",
    }
    # every option shows its default in --help
    t, s, m = (
        sub.add_parser(name, help=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        for name, text in commands.items()
    )
    for p in (t, s, m):  # what every generator takes
        p.add_argument("--out", type=Path, required=True, help="folder to write to")
        p.add_argument("--seed", type=int, default=0, help="simulator seed: same seed, same bytes")
        p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    for p in (t, m):
        p.add_argument(
            "--scheme",
            choices=sorted(SCHEMES),
            default="sen12ms_cloud",
            help="class scheme and layout: SEN12MS (clouds pasted at load) or Hunan-style cloudy",
        )
    for p in (t, s):
        p.add_argument("--workers", type=int, default=1, help="processes (output is identical)")
    t.add_argument("--pairs", type=int, default=1200, help="number of co-registered S1/S2 pairs")
    t.add_argument("--patch-size", type=int, default=64, help="tile side in pixels (10 m)")
    t.add_argument("--nan-fraction", type=float, default=0.0, help="NaN share in S1 (tests)")
    s.add_argument("--per-class", type=int, default=60, help="images per class")
    s.add_argument("--size", type=int, default=96, help="image side in pixels")
    s.add_argument(
        "--role",
        choices=sorted(SOURCE_ROLES),
        default="nwpu",
        help="source data set role: NWPU-RESISC45 (Table I) or AID (Table II) classes and scales",
    )
    m.add_argument("--size", type=int, default=2048, help="scene side in pixels (10 m)")
    m.add_argument(
        "--cloud-cover",
        type=float,
        default=DEFAULT_CLOUD_COVER,
        help="share of the scene under thick cloud",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the simulator CLI; returns a process exit code."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.command == "target":
            if args.pairs < 1 or args.patch_size < 8:
                raise ValueError("--pairs must be >= 1 and --patch-size >= 8")
            counts = generate_target(
                args.out,
                pairs=args.pairs,
                seed=args.seed,
                scheme=args.scheme,
                patch_size=args.patch_size,
                overwrite=args.overwrite,
                nan_fraction=args.nan_fraction,
                workers=args.workers,
            )
            what = f"{sum(counts.values())} {args.scheme} pairs"
            record: dict[str, Any] = {"generator": "target", "scheme": args.scheme,
                                      "pairs": args.pairs, "patch_size": args.patch_size,
                                      "nan_fraction": args.nan_fraction}  # fmt: skip
        elif args.command == "scene":
            counts = generate_scene(
                args.out,
                size=args.size,
                seed=args.seed,
                scheme=args.scheme,
                cloud_cover=args.cloud_cover,
                overwrite=args.overwrite,
            )
            what = f"a {args.size}x{args.size} px {args.scheme} scene (pixels per class)"
            record = {"generator": "scene", "scheme": args.scheme, "size": args.size,
                      "cloud_cover": args.cloud_cover}  # fmt: skip
        else:
            if args.per_class < 1 or args.size < 8:
                raise ValueError("--per-class must be >= 1 and --size >= 8")
            counts = generate_source(
                args.out,
                per_class=args.per_class,
                seed=args.seed,
                size=args.size,
                overwrite=args.overwrite,
                workers=args.workers,
                role=args.role,
            )
            what = f"{sum(counts.values())} {args.role} source images"
            record = {"generator": "source", "role": args.role, "per_class": args.per_class,
                      "size": args.size}  # fmt: skip
    except (FileExistsError, ValueError) as err:
        print(f"synth: error: {err}", file=sys.stderr)
        return 2
    write_json(args.out / SIMULATION_RECORD, {**record, "seed": args.seed})
    per_class = ", ".join(f"{k}={v}" for k, v in counts.items())
    elapsed = time.perf_counter() - start
    print(f"wrote {what} to {args.out} in {elapsed:.1f}s: {per_class}")
    return 0
