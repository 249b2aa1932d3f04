"""``cloudxfer map``: classify a co-registered S2/S1 scene pair of any size into a class map.

Usage: ``cloudxfer map --ckpt F2.ckpt --opt S2.tif --sar S1.tif [--mask clouds.tif]
--out map.tif [--stride 32] [--batch-size 64] [--device auto] [--fallback sar_auxiliary
--sar-ckpt aux_sar.ckpt] [--truth truth.tif]``.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import torch
from tqdm import tqdm

from cloudxfer.checkpoints import CheckpointError
from cloudxfer.mapping.options import DEFAULT_BATCH, DEFAULT_STRIDE, build_parser
from cloudxfer.mapping.predictor import (
    TARGET_STAGES,
    FallbackPolicy,
    MapModel,
    WindowClassifier,
)
from cloudxfer.mapping.reader import StripArrays, TwinReader
from cloudxfer.mapping.score import score_map
from cloudxfer.mapping.windows import WINDOW, StripAccumulator, window_offsets
from cloudxfer.mapping.writer import MapWriter
from cloudxfer.runtime import configure_threads
from datamodules.errors import DataError

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_STRIDE",
    "MapSummary",
    "build_parser",
    "execute",
    "main",
    "map_scene",
]

GDAL_CACHE_MB = 64
"""GDAL's block cache (MB): bounded, so peak memory does not follow the scene's size."""
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20
"""Arrays above 1 MiB (strip-sized: O(width)) are mapped and unmapped by themselves."""


@dataclass(frozen=True)
class MapSummary:
    """What one map run did."""

    windows: int
    classified: int
    fallback: int
    height: int
    width: int


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def map_scene(
    reader: TwinReader,
    classifier: WindowClassifier,
    writer: MapWriter,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
) -> MapSummary:
    """Slide windows over the scene strip by strip, average probabilities, write the map.

    A pixel is mapped where the SAR is valid and, without a fallback policy, the optical is
    too; windows with no such pixel are skipped.
    """
    rows = window_offsets(reader.height, WINDOW, stride)
    cols = window_offsets(reader.width, WINDOW, stride)
    acc = StripAccumulator(reader.width, len(classifier.class_names))
    needs_optical = classifier.policy.kind == "none"
    classified = fallback = 0
    with tqdm(
        total=len(rows) * len(cols), unit="window", disable=not progress, file=sys.stderr
    ) as bar:
        for i, top in enumerate(rows):
            strip = reader.strip(top, WINDOW)
            valid = strip.sar_valid & strip.opt_valid if needs_optical else strip.sar_valid
            todo = [c for c in cols if valid[:, c : c + WINDOW].any()]
            for batch in _chunks(todo, batch_size):
                preds = classifier(*_windows(strip, batch))
                for col, probs in zip(batch, preds.probs, strict=True):
                    acc.add(col, probs, valid[:, col : col + WINDOW])
                classified += len(batch)
                fallback += int(preds.fallback.sum())
            bar.update(len(cols))
            writer.write(acc.finish(rows[i + 1] if i + 1 < len(rows) else None))
    return MapSummary(len(rows) * len(cols), classified, fallback, reader.height, reader.width)


def _windows(
    strip: StripArrays, cols: Sequence[int]
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]:
    """Stack the windows at ``cols`` of a strip: (opt_dn, sar_db, opt_valid, cloud)."""

    def cut(array: np.ndarray) -> np.ndarray:
        return np.stack([array[..., c : c + WINDOW] for c in cols])

    opt = None if strip.opt_dn is None else cut(strip.opt_dn)
    cloud = None if strip.cloud is None else cut(strip.cloud)
    return opt, cut(strip.sar_db), cut(strip.opt_valid), cloud


def pin_mmap_threshold() -> None:
    """Keep glibc from serving strip-sized temporaries from its heap, where they fragment it.

    glibc raises its mmap threshold (up to 32 MiB) after the first large free; strip-sized
    arrays (a few MiB per strip, more the wider the scene) then come from the heap, whose
    fragments are not returned, and peak RSS grew with the scene (+300 MiB at 8,000 px,
    ``benchmarks/map_memory.py``). Neither numpy nor rasterio sets this; a fixed threshold
    (``mallopt``, as the ``MALLOC_MMAP_THRESHOLD_`` variable would) does. No-op without glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run(args: argparse.Namespace) -> int:
    """Validate the inputs, map the scene, report (and score) it."""
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists (pass --overwrite to replace it)")
    if args.opt is None and args.fallback == "none":
        raise ValueError("--opt is required unless a --fallback policy handles missing optical")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    window_offsets(WINDOW, WINDOW, args.stride)  # checks the stride before any work
    if args.threads is not None:
        configure_threads(args.threads)
    pin_mmap_threshold()
    policy = FallbackPolicy(
        args.fallback, args.fallback_threshold, str(args.sar_ckpt) if args.sar_ckpt else None
    )
    target = MapModel.load(args.ckpt, TARGET_STAGES, "opt+sar")
    sar_model = None
    if policy.kind == "sar_auxiliary":
        sar_model = MapModel.load(
            str(policy.sar_ckpt), frozenset({"auxiliary"}), "sar", target.class_names
        )
    device = _device(args.device)
    classifier = WindowClassifier(target, policy, sar_model, device, bf16=not args.no_bf16)
    preview = None if args.no_preview else (args.preview or args.out.with_suffix(".png"))
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB),
        TwinReader(args.sar, args.opt, args.mask, target.opt_bands) as reader,
        MapWriter(
            args.out,
            width=reader.width,
            height=reader.height,
            crs=reader.crs,
            transform=reader.transform,
            class_names=target.class_names,
            preview=preview,
            tags={
                "checkpoint": str(args.ckpt),
                "stride": str(args.stride),
                "fallback": policy.kind,
                "fallback_threshold": str(policy.threshold),
            },
        ) as writer,
    ):
        summary = map_scene(
            reader, classifier, writer, args.stride, args.batch_size, progress=not args.quiet
        )
        writer.commit()
    print(
        f"wrote {args.out} ({summary.width}x{summary.height} px, {summary.windows} windows, "
        f"{summary.classified} classified, {summary.fallback} by the {policy.kind} fallback, "
        f"device {device})" + (f" and {preview}" if preview else "")
    )
    if args.truth is not None:
        score = score_map(args.out, args.truth)
        print(f"OA against {args.truth}: {100 * score.oa:.2f} % over {score.pixels} pixels")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cloudxfer map``; returns the exit code (2 on bad input, nothing written)."""
    return execute(build_parser().parse_args(argv))


def execute(args: argparse.Namespace) -> int:
    """Map the scene of parsed arguments; a bad input is one error line and exit code 2."""
    try:
        return run(args)
    except (CheckpointError, DataError, FileExistsError, ValueError) as err:
        print(f"cloudxfer map: error: {err}", file=sys.stderr)
        return 2
