"""Explore candidate simulator settings with the calibration before changing the simulator.

Each variant patches named simulator constants in this process only, writes a target set
and a source set with them, and runs ``benchmarks.calibrate_simulator`` on the result (any
extra arguments go to it, e.g. ``--device cuda --train-seeds 0 --figures R4``). Nothing in
the package changes: a variant that reaches the regime is then written into the simulator
and calibrated again with the recorded command (docs/simulator.md). Like the calibration,
this runs no compared method.

Usage::

    python -m benchmarks.explore_simulator --variant footprint+more_classes --out /tmp/x \
        -- --device cuda --train-seeds 0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import cloudxfer.sim.generate as generate
import cloudxfer.sim.sar as sar
import cloudxfer.sim.scene as scene
import cloudxfer.sim.schemes as schemes
import cloudxfer.sim.spectra as spectra
from benchmarks import calibrate_simulator
from cloudxfer.sim.schemes import ClassSpec, Scheme

NWPU_PIXELS = 256  # NWPU-RESISC45 images are 256 x 256; ours are rendered at 96 px
RENDER_PIXELS = 96


def _set_source(classes: Sequence[ClassSpec]) -> None:
    scheme = Scheme("source", tuple(classes))
    schemes.SOURCE = scheme
    schemes.SOURCE_ROLES["nwpu"] = scheme  # the dict the generator reads


def footprint() -> None:
    """Source images cover a 256-px NWPU footprint: pixel sizes x 256/96 at 96 px."""
    f = NWPU_PIXELS / RENDER_PIXELS
    _set_source(
        [replace(c, pixel_m=(c.pixel_m[0] * f, c.pixel_m[1] * f)) for c in schemes.SOURCE.classes]
    )


def strong_regional() -> None:
    """Regional appearance spreads 0.3 -> 0.45 (more looks per class across regions)."""
    spectra.REGIONAL_SHAPE_SD = 0.45
    spectra.REGIONAL_BRIGHTNESS_SD = 0.45


def sar_spread() -> None:
    """Tile-to-tile backscatter spread per material 1.5 -> 2.5 dB."""
    sar.MATERIAL_SD_DB = 2.5


def _sar(material: float, cross_pol: float, moisture: float = 1.5, local: float = 1.5) -> None:
    sar.MATERIAL_SD_DB = material
    sar.CROSS_POL_SD_DB = cross_pol
    sar.LOCAL_MOISTURE_SD_DB = local
    scene.SOIL_MOISTURE_SD_DB = moisture


VARIANTS: dict[str, Callable[[], None]] = {
    "sar_a": lambda: _sar(3.0, 1.5),
    "sar_b": lambda: _sar(3.5, 2.0),
    "sar_c": lambda: _sar(3.0, 1.5, 3.0, 2.5),
    "sar_d": lambda: _sar(4.0, 2.0, 3.0, 2.5),
    "baseline": lambda: None,
    "footprint": footprint,
    "strong_regional": strong_regional,
    "sar_spread": sar_spread,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Patch, generate, calibrate."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        rest = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="baseline", help="'+'-joined names of VARIANTS")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target", type=Path, default=None, help="target set (made if missing)")
    parser.add_argument("--source", type=Path, default=None, help="source set (made if missing)")
    parser.add_argument(
        "--generate-only", choices=("target", "source", "both"), help="write these sets, stop"
    )
    args = parser.parse_args(argv)
    for name in args.variant.split("+"):
        VARIANTS[name]()
    target = args.target or args.out / "target"
    source = args.source or args.out / "source"
    make = {"target", "source"} if args.generate_only in (None, "both") else {args.generate_only}
    if "target" in make and not target.exists():
        generate.generate_target(target, args.pairs, args.seed, workers=args.workers)
    if "source" in make and not source.exists():
        generate.generate_source(source, args.per_class, args.seed, workers=args.workers)
    if args.generate_only:
        return 0
    print(f"variant {args.variant}, simulator seed {args.seed}", flush=True)
    return calibrate_simulator.main(["--data", str(target), "--source", str(source), *rest])


if __name__ == "__main__":
    raise SystemExit(main())
