"""Convergence curves: each stage's training and held-out loss per epoch, its best epoch marked.

Reads the ``training.json`` every fit writes (docs/method.md, "Validation, convergence and
diagnostics"), so the figure shows exactly what the convergence verdict was judged on: the
stage's own objective on its held-out tiles, and the epoch whose weights the stage hands on.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudxfer.diagnostics import TRAINING_FILENAME
from cloudxfer.reporting.figures import pyplot, save_png
from cloudxfer.reporting.report import find_stage_dirs, read_record
from datamodules.runfiles import atomic_open

__all__ = [
    "CONVERGENCE_COLUMNS",
    "StageCurve",
    "convergence_figure",
    "fitted_stages",
    "read_curve",
]

CONVERGENCE_COLUMNS = ("stage", "epoch", "train_loss", "val_loss", "best_epoch", "converged")
"""Columns of the CSV written beside the figure (epochs counted from 1, as the report's lines)."""

PANELS_PER_ROW = 3


@dataclass(frozen=True)
class StageCurve:
    """One stage's loss curves (epoch ``i`` of the lists is epoch ``i + 1``) and its verdict."""

    name: str
    train: list[float | None]
    val: list[float | None]
    best_epoch: int | None
    """The epoch (from 1) of the lowest held-out loss, whose weights the stage hands on."""
    converged: bool | None


def fitted_stages(run_dir: Path) -> list[Path]:
    """``run_dir`` when it is a fitted stage folder, else its fitted stage sub-folders (sorted).

    Raises:
        ValueError: naming ``run_dir`` when it holds no ``training.json``.

    """
    stages = [s for s in find_stage_dirs(run_dir) if (s / TRAINING_FILENAME).is_file()]
    if not stages:
        raise ValueError(f"{run_dir}: no fitted stage folder ({TRAINING_FILENAME})")
    return stages


def read_curve(stage_dir: Path) -> StageCurve:
    """Read a stage folder's ``training.json`` into a :class:`StageCurve`.

    Raises:
        ValueError: naming the file when it is missing, unreadable or holds no epochs.

    """
    path = stage_dir / TRAINING_FILENAME
    record = read_record(path) or {}
    epochs = record.get("epochs") or []
    if not epochs:
        raise ValueError(f"{path}: no training record with epochs (has this stage been fitted?)")
    conv = record.get("convergence") or {}
    best = conv.get("best_epoch")
    return StageCurve(
        name=stage_dir.name,
        train=[(entry.get("train") or {}).get("loss") for entry in epochs],
        val=[(entry.get("val") or {}).get("loss") for entry in epochs],
        best_epoch=None if best is None else int(best) + 1,
        converged=conv.get("met"),
    )


def _write_csv(curves: Sequence[StageCurve], out: Path) -> Path:
    with atomic_open(out) as handle:
        writer = csv.writer(handle)
        writer.writerow(CONVERGENCE_COLUMNS)
        for curve in curves:
            for i, (train, val) in enumerate(zip(curve.train, curve.val, strict=True)):
                writer.writerow([
                    curve.name, i + 1,
                    "" if train is None else f"{train:.6f}", "" if val is None else f"{val:.6f}",
                    "" if curve.best_epoch is None else curve.best_epoch,
                    "" if curve.converged is None else ("yes" if curve.converged else "no"),
                ])  # fmt: skip
    return out


def convergence_figure(stage_dirs: Sequence[Path], out: Path) -> tuple[Path, Path]:
    """Draw one panel per stage (train and held-out loss, best epoch dashed) and its CSV.

    Returns:
        The PNG and the CSV written beside it (same name, ``.csv``).

    """
    if not stage_dirs:
        raise ValueError("no stage folders to plot")
    curves = [read_curve(stage) for stage in stage_dirs]
    plt = pyplot()
    cols = min(PANELS_PER_ROW, len(curves))
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, curve in zip(axes.flat, curves, strict=False):
        epochs = range(1, len(curve.train) + 1)
        for values, label in ((curve.train, "train"), (curve.val, "held-out")):
            points = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=label)
        if curve.best_epoch is not None:
            ax.axvline(curve.best_epoch, color="grey", ls="--", lw=1, label="lowest held-out")
        verdict = {True: "converged", False: "NOT converged", None: "no verdict"}[curve.converged]
        ax.set_title(f"{curve.name}: {verdict}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("stage loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, out)
    plt.close(fig)
    return out, _write_csv(curves, out.with_suffix(".csv"))
