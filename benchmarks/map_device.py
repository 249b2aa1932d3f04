"""`cloudxfer map` on an accelerator (bf16 and float32) against the float32 CPU map.

Simulates one scene with ``cloudxfer synth scene``, maps it on the CPU and on ``--device``
(bf16 autocast, float32, a larger batch, and the ``cloud_optical`` fallback), each in a fresh
process as a user would, and prints per map: its OA against the truth raster, and against the
matching CPU map the share of pixels of equal class, whether nodata, CRS and transform are
identical, and the largest confidence difference (band 2, 0-100).

    python -m benchmarks.map_device --ckpt runs/demo/runs/target/checkpoints/best.ckpt \
        --size 1024 --device cuda --out /tmp/map_device
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio

# name -> (device is the accelerator, extra map options, the CPU map it is compared with)
MAPS: dict[str, tuple[bool, list[str], str | None]] = {
    "cpu": (False, [], None),
    "cpu_cloud_optical": (False, ["--fallback", "cloud_optical"], None),
    "device_bf16": (True, [], "cpu"),
    "device_fp32": (True, ["--no-bf16"], "cpu"),
    "device_bf16_batch256": (True, ["--batch-size", "256"], "cpu"),
    "device_bf16_cloud_optical": (True, ["--fallback", "cloud_optical"], "cpu_cloud_optical"),
}


def _cloudxfer(*args: str) -> str:
    """Run ``python -m cloudxfer ARGS`` in a fresh process; return its last output line."""
    result = subprocess.run([sys.executable, "-m", "cloudxfer", *args], capture_output=True,
                            text=True, check=True)  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def _bands(path: Path) -> tuple[np.ndarray, np.ndarray, object, object]:
    with rasterio.open(path) as f:
        return f.read(1), f.read(2).astype(np.int16), f.crs, f.transform


def compare(path: Path, reference: Path) -> str:
    """Describe how far the map at ``path`` is from the one at ``reference``."""
    classes, confidence, crs, transform = _bands(path)
    ref_classes, ref_confidence, ref_crs, ref_transform = _bands(reference)
    valid = (classes != 255) & (ref_classes != 255)
    same = 100 * float((classes[valid] == ref_classes[valid]).mean())
    diff = np.abs(confidence[valid] - ref_confidence[valid])
    nodata = bool(((classes == 255) == (ref_classes == 255)).all())
    georef = crs == ref_crs and transform == ref_transform
    return (f"same class {same:.3f} % of {int(valid.sum())} px, nodata identical {nodata}, "
            f"CRS/transform identical {georef}, confidence |diff| max {int(diff.max())} "
            f"mean {float(diff.mean()):.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Map one simulated scene on the CPU and on ``--device`` and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="an F2 target checkpoint")
    p.add_argument("--size", type=int, default=1024, help="scene side in pixels")
    p.add_argument("--device", default="cuda", help="the accelerator to compare with the CPU")
    p.add_argument("--stride", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the CPU maps")
    p.add_argument("--out", type=Path, required=True, help="folder for the scene and the maps")
    args = p.parse_args(argv)
    scene = args.out / "scene"
    _cloudxfer("synth", "scene", "--out", str(scene), "--size", str(args.size), "--seed", "0",
               "--overwrite")  # fmt: skip
    print(f"scene {args.size} x {args.size} px, stride {args.stride}, device {args.device}")
    for name, (on_device, extra, reference) in MAPS.items():
        device = ["--device", args.device] if on_device else ["--device", "cpu"]
        threads = [] if on_device else ["--threads", str(args.threads)]
        start = time.perf_counter()
        oa = _cloudxfer("map", "--ckpt", args.ckpt, "--opt", str(scene / "s2.tif"),
                        "--sar", str(scene / "s1.tif"), "--mask", str(scene / "clouds.tif"),
                        "--truth", str(scene / "truth.tif"), "--stride", str(args.stride),
                        "--out", str(args.out / f"{name}.tif"), "--quiet", "--overwrite",
                        *device, *threads, *extra)  # fmt: skip
        wall = time.perf_counter() - start
        line = f"{name}: OA {oa.split(':', 1)[1].strip()} (process wall {wall:.1f} s)"
        if reference is not None:
            found = compare(args.out / f"{name}.tif", args.out / f"{reference}.tif")
            line += f"; vs {reference}: {found}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
