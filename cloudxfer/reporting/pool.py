"""The unlabelled-pool figure: OA of f_S, F1 and F2 against the size of the unlabelled pool.

Reads the runs ``make fig-pool`` leaves, one ``cloudxfer run`` folder per pool size
(``pool<N>/seed<k>/<method>/``), from their ``run.json`` and ``test/metrics.json`` (never from
memory), and checks what the figure's reading rests on: each distilled run was trained on the
pool its folder names (its recorded fit command), and f_S is the same run at every size.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from cloudxfer.reporting.figures import pyplot, save_png
from cloudxfer.reporting.report import read_record
from cloudxfer.reporting.tables import TableRow, collect
from cloudxfer.runner.methods import method
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME
from datamodules.runfiles import atomic_open

__all__ = [
    "POOL_COLUMNS",
    "POOL_METHODS",
    "POOL_PREFIX",
    "Series",
    "pool_figure",
    "pool_points",
    "pool_sizes",
    "progress_lines",
]

POOL_PREFIX = "pool"
"""A pool size's folder: ``pool<number of unlabelled training tiles>`` (``make fig-pool``)."""
POOL_METHODS: tuple[str, ...] = ("source_finetune", "aux_opt", "aux_sar", "target", "target_noirm")
"""What the figure draws: f_S, the F1 auxiliaries, F2 with and without IRM."""
POOL_COLUMNS = ("size", "method", "label", "seed", "oa", "oa_mean", "oa_std", "seeds")
"""Columns of the figure's CSV: one row per size, method and seed (OA in %); mean and sample
std over the size's seeds repeated on each of its rows, ``seeds`` their number."""
_POOL_ARGUMENT = re.compile(r"--data\.init_args\.unlabelled_pool=(\d+)")
REFERENCE = "source_finetune"
"""The method trained on the labelled tiles only: one run at every size."""


Series = dict[str, list[tuple[int, TableRow]]]
"""Per method, ``(pool size, its row over the seeds run at that size)`` by size."""


def pool_sizes(root: Path) -> list[tuple[int, Path]]:
    """Return ``(size, folder)`` of every ``pool<N>`` folder under ``root``, by size.

    Raises:
        ValueError: No such folder.

    """
    sizes = []
    for folder in root.glob(f"{POOL_PREFIX}*"):
        suffix = folder.name[len(POOL_PREFIX) :]
        if folder.is_dir() and suffix.isdigit():
            sizes.append((int(suffix), folder))
    if not sizes:
        raise ValueError(f"{root}: no pool sizes ({POOL_PREFIX}<N>/ folders) found")
    return sorted(sizes)


def _record(run: Path) -> dict[str, object]:
    record = read_record(run / RECORD_FILENAME)
    if record is None:
        raise ValueError(f"{run / RECORD_FILENAME}: cannot read the run's record")
    return record


def _recorded_pool(run: Path) -> int | None:
    """Return the ``unlabelled_pool`` a run's recorded fit command gives (None: none)."""
    found = _POOL_ARGUMENT.findall(str(_record(run).get("fit") or ""))
    return int(found[-1]) if found else None


def _tested_runs(folder: Path, methods: Sequence[str]) -> list[Path]:
    """Return the tested runs of ``methods`` below one size's folder, by method and seed.

    A size still running may have none yet.
    """
    found = [p.parent for p in folder.glob(f"seed*/*/{RECORD_FILENAME}")]
    runs = [run for run in found if run.name in methods and (run / METRICS).is_file()]
    order = {name: i for i, name in enumerate(methods)}
    return sorted(runs, key=lambda run: (order[run.name], run.parent.name))


def _check_run(run: Path, size: int, reference: dict[int, tuple[str, object]]) -> None:
    """Refuse a run of another pool than its folder's, or an f_S that differs across sizes.

    f_S is the same at every size when its run id (its configuration and code) and its test
    scores are: one training copied to every size, as ``make fig-pool`` does, never two
    trainings of one configuration (CPU threads need not repeat a training bit for bit).

    Args:
        run: A run folder (``pool<N>/seed<k>/<method>``).
        size: The pool its folder names.
        reference: f_S's run id and test scores per seed, filled by the first size read.

    """
    name, pool = run.name, _recorded_pool(run)
    if name == REFERENCE:
        if pool is not None:
            raise ValueError(
                f"{run}: f_S was trained with unlabelled_pool={pool}; it trains on the "
                "labelled tiles and must be the same run at every size"
            )
        record = _record(run)
        seed, run_id = int(str(record["seed"])), str(record.get("id"))
        scores = read_record(run / METRICS)
        first_id, first_scores = reference.setdefault(seed, (run_id, scores))
        if first_id != run_id:
            raise ValueError(
                f"{run}: f_S is run {run_id} here but {first_id} at a smaller pool "
                f"(seed {seed}): the sizes must share one f_S (`make fig-pool` copies it)"
            )
        if first_scores != scores:
            raise ValueError(
                f"{run}: f_S scores differently here than at a smaller pool (seed {seed}): "
                "trained twice, not copied; the sizes must share one f_S (`make fig-pool` "
                "copies it)"
            )
    elif pool != size:
        given = "every unlabelled tile" if pool is None else f"unlabelled_pool={pool}"
        raise ValueError(f"{run}: trained on {given}, not the pool of {size} its folder names")


def pool_points(root: Path, methods: Sequence[str] = POOL_METHODS) -> Series:
    """Return, per method, ``(size, row over seeds)`` at every size that has tested runs of it.

    Raises:
        ValueError: No pool folder, no tested run at all, or a run that is not what its
            folder says (see :func:`_check_run`).

    """
    series: Series = {name: [] for name in methods}
    reference: dict[int, tuple[str, object]] = {}
    for size, folder in pool_sizes(root):
        runs = _tested_runs(folder, methods)
        for run in runs:
            _check_run(run, size, reference)
        for row in collect(runs) if runs else []:
            series[row.method].append((size, row))
    if not any(series.values()):
        raise ValueError(f"{root}: no tested runs (pool<N>/seed*/<method>/{METRICS}) found")
    return series


def progress_lines(root: Path, series: Series) -> list[str]:
    """Return one line per pool size: which methods have been tested at which seeds."""
    lines = []
    for size, folder in pool_sizes(root):
        done = [(name, row.seeds) for name, points in series.items()
                for at, row in points if at == size]  # fmt: skip
        text = "; ".join(f"{name} seeds {' '.join(map(str, seeds))}" for name, seeds in done)
        lines.append(f"pool {size} ({folder}): {text or 'no tested run yet'}")
    return lines


def _write_csv(series: Series, out: Path) -> Path:
    with atomic_open(out) as handle:
        writer = csv.writer(handle)
        writer.writerow(POOL_COLUMNS)
        for name, points in series.items():
            for size, row in points:
                mean, std = row.mean_std("oa") or (float("nan"), float("nan"))
                for seed, oa in zip(row.seeds, row.values.get("oa", ()), strict=False):
                    writer.writerow([
                        size, name, row.label, seed, f"{100 * oa:.2f}",
                        f"{100 * mean:.2f}", f"{100 * std:.2f}", len(row.seeds),
                    ])  # fmt: skip
    return out


def pool_figure(root: Path, out: Path, methods: Sequence[str] = POOL_METHODS) -> tuple[Path, Path]:
    """Draw OA (mean ± std over seeds) per method against the pool size; PNG, CSV beside it.

    Sizes and seeds still running are left out (:func:`progress_lines` says which are in).
    """
    series = pool_points(root, methods)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = _write_csv(series, out.with_suffix(".csv"))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.0))
    sizes: set[int] = set()
    counts: set[int] = set()
    for name, points in series.items():
        if not points:
            continue
        stats = [(size, row.mean_std("oa") or (0.0, 0.0)) for size, row in points]
        sizes.update(size for size, _ in stats)
        counts.update(len(row.seeds) for _, row in points)
        ax.errorbar(
            [size for size, _ in stats], [100 * m for _, (m, _) in stats],
            yerr=[100 * s for _, (_, s) in stats], marker="o", ms=4, capsize=2,
            label=method(name).label, linestyle="--" if name == REFERENCE else "-",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(sorted(sizes))
    ax.set_xticklabels([f"{size:,}" for size in sorted(sizes)], rotation=30)
    ax.minorticks_off()
    ax.set_xlabel("unlabelled training tiles (pool)")
    ax.set_ylabel("OA (%)")
    seeds = "/".join(map(str, sorted(counts)))
    ax.set_title(f"OA against the unlabelled pool (mean ± std over {seeds} seed(s))")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # never over a point
    fig.tight_layout()
    save_png(fig, out)
    plt.close(fig)
    return out, table
