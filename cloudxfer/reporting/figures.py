"""The paper's Figs. 7 and 9 from the runs' ``test/metrics.json`` files (never from memory).

Fig. 7: OA on cloudy vs clear test tiles per method of a table. Fig. 9: OA of F2 with and
without IRM against the share of clouded tiles. Mean and sample std over the seeds found.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from cloudxfer.reporting.tables import TableRow, collect
from cloudxfer.runner.methods import METHODS
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME
from datamodules.runfiles import atomic_open

__all__ = [
    "CLOUDY_CLEAR_COLUMNS",
    "SWEEP_COLUMNS",
    "SWEEP_PREFIX",
    "cloud_sweep_figure",
    "cloudy_clear_figure",
    "confusion_figures",
    "find_tested_runs",
    "plot_cloudy_clear",
    "pyplot",
    "save_png",
    "write_cloudy_clear",
]

SWEEP_PREFIX = "cloud"
"""A sweep level's folder: ``cloud<percent of tiles clouded>`` (``make fig9``)."""
SWEEP_COLUMNS = ("level", "method", "label", "seeds", "oa_mean", "oa_std", "aa_mean", "kappa_mean")
"""Columns of the Fig. 9 CSV (level and OA/AA in %)."""

CLOUDY_CLEAR_COLUMNS = (
    "method", "label", "group", "seeds",
    "oa_cloudy_mean", "oa_cloudy_std", "oa_clear_mean", "oa_clear_std", "n_cloudy", "n_clear",
)  # fmt: skip
"""Columns of the Fig. 7 CSV (OA in %)."""


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, out: Path, dpi: int = 150) -> Path:
    """Save a matplotlib figure as PNG atomically (a crash leaves the old file or none)."""
    with atomic_open(out, binary=True) as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    return out


def find_tested_runs(results: Path) -> list[Path]:
    """Run folders below ``results`` (``seed<k>/<method>/``) that hold test metrics.

    In registry order, then by seed, so figures list methods as the tables do.
    """
    records = results.glob(f"*/*/{RECORD_FILENAME}")
    folders = [p.parent for p in records if (p.parent / METRICS).is_file()]
    order = {name: i for i, name in enumerate(METHODS)}
    folders.sort(key=lambda p: (order.get(p.name, len(order)), p.parent.name))
    if not folders:
        raise ValueError(f"{results}: no tested runs (seed*/<method>/{METRICS}) found")
    return folders


def _percent(row: TableRow, key: str) -> tuple[float, float] | tuple[None, None]:
    stats = row.mean_std(key)
    return (None, None) if stats is None else (100 * stats[0], 100 * stats[1])


def write_cloudy_clear(rows: Sequence[TableRow], out: Path) -> Path:
    """Write the Fig. 7 CSV: per method, OA on cloudy and on clear tiles (mean, std, %)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as handle:
        writer = csv.writer(handle)
        writer.writerow(CLOUDY_CLEAR_COLUMNS)
        for row in rows:
            cloudy, clear = _percent(row, "oa_cloudy"), _percent(row, "oa_clear")
            writer.writerow([
                row.method, row.label, row.group, " ".join(map(str, row.seeds)),
                *("" if v is None else f"{v:.2f}" for v in (*cloudy, *clear)),
                row.counts.get("n_cloudy"), row.counts.get("n_clear"),
            ])  # fmt: skip
    return out


def plot_cloudy_clear(rows: Sequence[TableRow], out: Path) -> Path:
    """Draw Fig. 7: one pair of bars (cloudy, clear) per method with std error bars, to PNG."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(max(5.0, 0.75 * len(rows) + 2), 3.8))
    width = 0.38
    bars = ((-width / 2, "oa_cloudy", "cloudy"), (width / 2, "oa_clear", "clear"))
    for offset, key, name in bars:
        stats = [_percent(row, key) for row in rows]
        means = [m if m is not None else 0.0 for m, _ in stats]
        stds = [s if s is not None else 0.0 for _, s in stats]
        positions = [i + offset for i in range(len(rows))]
        ax.bar(positions, means, width, yerr=stds, capsize=2, label=f"{name} test tiles")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([row.label for row in rows], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("OA (%)")
    seeds = "/".join(map(str, sorted({len(row.seeds) for row in rows})))
    plural = "" if seeds == "1" else "s"
    ax.set_title(f"OA on cloudy vs clear test tiles (mean ± std over {seeds} seed{plural})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the axes: never over a bar
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, out)
    plt.close(fig)
    return out


def cloudy_clear_figure(results: Path, out: Path) -> tuple[Path, Path]:
    """Fig. 7 of a table's output folder: the PNG at ``out`` and the CSV beside it."""
    rows = collect(find_tested_runs(results))
    return plot_cloudy_clear(rows, out), write_cloudy_clear(rows, out.with_suffix(".csv"))


def _sweep_levels(root: Path) -> list[tuple[int, Path]]:
    """``(percent, folder)`` of every ``cloud<percent>`` folder under ``root``, by percent."""
    levels = []
    for folder in root.glob(f"{SWEEP_PREFIX}*"):
        suffix = folder.name[len(SWEEP_PREFIX) :]
        if folder.is_dir() and suffix.isdigit():
            levels.append((int(suffix), folder))
    if not levels:
        raise ValueError(f"{root}: no sweep levels ({SWEEP_PREFIX}<percent>/ folders) found")
    return sorted(levels)


def cloud_sweep_figure(
    root: Path, out: Path, methods: Sequence[str] = ("target", "target_noirm")
) -> tuple[Path, Path]:
    """Fig. 9: OA of ``methods`` against the clouded share, PNG at ``out``, CSV beside it."""
    plt = pyplot()

    series: dict[str, list[tuple[int, TableRow]]] = {name: [] for name in methods}
    for level, folder in _sweep_levels(root):
        for row in collect(find_tested_runs(folder)):
            if row.method in series:
                series[row.method].append((level, row))
    out.parent.mkdir(parents=True, exist_ok=True)
    table = out.with_suffix(".csv")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    with atomic_open(table) as handle:
        writer = csv.writer(handle)
        writer.writerow(SWEEP_COLUMNS)
        for name, points in series.items():
            if not points:
                continue
            stats = [(level, row, *_percent(row, "oa")) for level, row in points]
            for level, row, mean, std in stats:
                aa, kappa = row.mean_std("aa"), row.mean_std("kappa")
                writer.writerow([
                    level, name, row.label, " ".join(map(str, row.seeds)),
                    f"{mean:.2f}", f"{std:.2f}",
                    "" if aa is None else f"{100 * aa[0]:.2f}",
                    "" if kappa is None else f"{kappa[0]:.3f}",
                ])  # fmt: skip
            ax.errorbar(
                [s[0] for s in stats], [s[2] for s in stats], yerr=[s[3] for s in stats],
                marker="o", ms=4, capsize=2, label=stats[0][1].label,
            )  # fmt: skip
    ax.set_xlabel("tiles clouded (%)")
    ax.set_ylabel("OA (%)")
    ax.set_title("OA against cloud content (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, out)
    plt.close(fig)
    return out, table


def _confusion(run: Path, classes: Sequence[str]) -> Tensor:
    """Return the run's test confusion matrix (rows true, columns predicted)."""
    path = run / METRICS.parent / "predictions.csv"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [(int(r["label"]), int(r["pred"])) for r in csv.DictReader(handle)]
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the run's predictions ({err})") from None
    rows = [(t, p) for t, p in rows if t >= 0]
    metric = MulticlassConfusionMatrix(num_classes=len(classes))
    if rows:
        truth, preds = torch.tensor(rows).T
        metric.update(preds, truth)
    return metric.compute()


def confusion_figures(results: Path, out: Path) -> list[Path]:
    """Write each method's confusion matrices and the per-class recall table under ``out``.

    ``confusion_<method>.png``: the test confusion matrix summed over seeds (cells: counts,
    colour: row share); ``recall.csv``: per-class recall (%) per method, mean over seeds.
    """
    plt = pyplot()

    by_method: dict[str, list[Path]] = {}
    for run in find_tested_runs(results):
        by_method.setdefault(run.name, []).append(run)
    out.mkdir(parents=True, exist_ok=True)
    written, recalls = [], []
    for name, runs in by_method.items():
        classes = list(json.loads((runs[0] / METRICS).read_text())["class_names"])
        matrices = [_confusion(run, classes) for run in runs]
        per_seed = [m.diagonal() / m.sum(dim=1).clamp_min(1) for m in matrices]
        recalls.append((name, classes, torch.stack(per_seed).mean(dim=0), len(runs)))
        total = torch.stack(matrices).sum(dim=0)
        fig, ax = plt.subplots(figsize=(6, 5.2))
        ax.imshow(total / total.sum(dim=1, keepdim=True).clamp_min(1), cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(total.numpy()):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{METHODS[name].label if name in METHODS else name}: {len(runs)} seed(s)")
        fig.tight_layout()
        written.append(out / f"confusion_{name}.png")
        save_png(fig, written[-1])
        plt.close(fig)
    table = out / "recall.csv"
    with atomic_open(table) as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "seeds", *recalls[0][1]])
        for name, _, recall, seeds in recalls:
            writer.writerow([name, seeds, *(f"{100 * float(v):.2f}" for v in recall)])
    return [*written, table]
