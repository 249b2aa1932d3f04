"""``cloudxfer map``'s arguments and entry point, light enough for ``--help`` to be instant.

The mapping itself (torch, rasterio: seconds to import) is imported once the arguments parsed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_FALLBACK_THRESHOLD",
    "DEFAULT_STRIDE",
    "FALLBACKS",
    "WINDOW",
    "build_parser",
    "main",
]

DEFAULT_STRIDE = 32
DEFAULT_BATCH = 64
WINDOW = 64
"""Side of a classified window: the tiles' size."""
FALLBACKS: tuple[str, ...] = ("none", "sar_auxiliary", "cloud_optical")
"""What a window whose optical is unusable gets (:mod:`cloudxfer.mapping.predictor`)."""
DEFAULT_FALLBACK_THRESHOLD = 0.9
"""A window's optical is unusable when more than this share of it is cloud or nodata."""


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``cloudxfer map``."""
    p = argparse.ArgumentParser(
        prog="cloudxfer map",
        description="Classify a co-registered Sentinel-2/Sentinel-1 scene pair with sliding "
        "64 x 64 windows into a class map (GeoTIFF: class, confidence) and a PNG preview.",
    )
    p.add_argument("--ckpt", type=Path, required=True, help="F2 target checkpoint")
    p.add_argument("--sar", type=Path, required=True, help="S1 scene: VV, VH in dB")
    p.add_argument("--opt", type=Path, help="S2 L1C scene (13 bands); omit only with a --fallback")
    p.add_argument("--mask", type=Path, help="cloud mask on the same grid (1 band)")
    p.add_argument("--out", type=Path, required=True, help="map GeoTIFF to write")
    p.add_argument("--preview", type=Path, help="PNG preview (default: --out with .png)")
    p.add_argument("--no-preview", action="store_true", help="write no PNG preview")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--stride", type=int, default=DEFAULT_STRIDE, help=f"window step, 1..{WINDOW}")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="windows per batch")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, ...")
    p.add_argument("--no-bf16", action="store_true", help="float32 on GPU (default: bf16)")
    p.add_argument("--threads", type=int, help="CPU compute threads (default: torch's)")
    p.add_argument(
        "--fallback",
        choices=FALLBACKS,
        default="none",
        help="where a window's optical is missing or clouded beyond --fallback-threshold: "
        "none, sar_auxiliary (F1 SAR auxiliary's prediction) or cloud_optical (full thick "
        "cloud in place of the optical window)",
    )
    p.add_argument(
        "--fallback-threshold",
        type=float,
        default=DEFAULT_FALLBACK_THRESHOLD,
        help="unusable share (cloud or optical nodata) of a window above which it falls back",
    )
    p.add_argument("--sar-ckpt", type=Path, help="F1 SAR auxiliary checkpoint (sar_auxiliary)")
    p.add_argument("--truth", type=Path, help="truth raster: print the map's OA against it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, then run ``cloudxfer map`` (exit code 2 on bad input, nothing written)."""
    args = build_parser().parse_args(argv)
    from cloudxfer.mapping.cli import execute

    return execute(args)
