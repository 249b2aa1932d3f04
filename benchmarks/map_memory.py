"""Peak memory of ``cloudxfer map`` against scene size (2,000 and 8,000 px squares).

Writes two S2/S1 scene pairs (tiled 256 px, deflate, as ``synth scene`` writes them; cheap
smooth content instead of the simulator's, which does not change what is read or held),
builds an untrained target checkpoint of the quick profile's network (ResNet-10) with the
default data config's normalisation, then runs ``python -m cloudxfer map`` once per scene in
a fresh process and prints each process's peak resident set size (``os.wait4``) and wall time.

    OMP_NUM_THREADS=1 python -m benchmarks.map_memory --out /tmp/map_memory
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window

from benchmarks.common import data_settings, profile
from cloudxfer.stages.target import TargetDistillation
from datamodules.normalisation import Standardisation, scaling_constants

SIZES = (2000, 8000)
STRIP = 256  # rows written at a time: one block row
PIXEL_M = 10.0


def write_scene(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """Write an S2 (13 x uint16) and S1 (2 x float32) scene pair, strip by strip (once)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "s2.tif", folder / "s1.tif"
    if (folder / "complete").is_file():
        return paths  # written by an earlier run
    common = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "crs": "EPSG:32632",
        "transform": Affine(PIXEL_M, 0.0, 500000.0, 0.0, -PIXEL_M, 5000000.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    level = (np.arange(size) // 500 % 5)[None, None, :]  # land-cover-like column bands
    with (
        rasterio.open(paths[0], "w", count=13, dtype="uint16", **common) as s2,
        rasterio.open(paths[1], "w", count=2, dtype="float32", **common) as s1,
    ):
        for top in range(0, size, STRIP):
            rows = min(STRIP, size - top)
            window = Window(0, top, size, rows)  # type: ignore[call-arg]
            noise = rng.integers(0, 16, (13, rows, size))
            s2.write((500 + 600 * level + noise).astype(np.uint16), window=window)
            vv = -8.0 - 2.0 * level[0] + rng.normal(0.0, 0.5, (rows, size))
            s1.write(np.stack([vv, vv - 7.0]).astype(np.float32), window=window)
    (folder / "complete").touch()
    return paths


def target_checkpoint(path: Path) -> Path:
    """An untrained F2 target checkpoint with the default data config's normalisation."""
    settings = data_settings()
    constants = scaling_constants()
    constants["sar"]["sar_nan"] = "fill"
    normalisation = {
        **constants,
        "standardisation": Standardisation.from_dict(settings["standardisation"]).to_dict(),
    }
    torch.manual_seed(0)
    module = TargetDistillation(
        teacher_opt="-",
        teacher_sar="-",
        teacher_source="-",
        backbone=str(profile("quick")["target_backbone"]),
        class_names=settings["classes"],
        normalisation=normalisation,
    )
    torch.save({"state_dict": module.state_dict(), "cloudxfer": module.stage_metadata()}, path)
    return path


def peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """Run a command; return its peak RSS (MiB) and wall time (s)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return usage.ru_maxrss / 1024.0, time.perf_counter() - start  # Linux: ru_maxrss in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", type=Path, required=True, help="scratch folder (~1 GB; scenes are reused)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = target_checkpoint(args.out / "target.ckpt")
    print(f"threads={os.environ.get('OMP_NUM_THREADS', 'unset')} stride={args.stride} "
          f"batch={args.batch_size} backbone={profile('quick')['target_backbone']}")  # fmt: skip
    for size in args.sizes:
        opt, sar = write_scene(args.out / f"scene{size}", size)
        command = [
            sys.executable, "-m", "cloudxfer", "map", "--ckpt", str(ckpt), "--opt", str(opt),
            "--sar", str(sar), "--out", str(args.out / f"map{size}.tif"), "--overwrite",
            "--quiet", "--device", "cpu", "--stride", str(args.stride),
            "--batch-size", str(args.batch_size),
        ]  # fmt: skip
        rss, seconds = peak_rss_mib(command)
        print(f"FIGURE map_peak_rss_mib_{size} {rss:.1f}  (wall {seconds:.0f} s, "
              f"{size}x{size} px)")  # fmt: skip


if __name__ == "__main__":
    main()
