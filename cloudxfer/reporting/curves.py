"""Per-modality loss curves of one or more runs, side by side (the paper's Fig. 8).

Reads the ``metrics.csv`` the CSV logger writes into each run directory and plots the epoch
means of ``loss/opt``, ``loss/sar`` and ``loss/source`` (and the IRM weights when logged).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

__all__ = ["LOSS_KEYS", "epoch_means", "main", "plot_loss_curves"]

LOSS_KEYS: tuple[str, ...] = ("loss/opt", "loss/sar", "loss/source")
RHO_KEYS: tuple[str, ...] = ("irm/rho_opt", "irm/rho_sar")


def epoch_means(metrics_csv: str | Path, keys: tuple[str, ...]) -> dict[str, list[float]]:
    """Mean of each logged key per epoch, from a CSV logger's ``metrics.csv``.

    Raises:
        FileNotFoundError: naming the file when it does not exist.
        ValueError: naming the file when none of ``keys`` was logged.

    """
    path = Path(metrics_csv)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.csv (is this a run directory?)")
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not set(keys) & set(reader.fieldnames or []):
            raise ValueError(f"{path}: none of {list(keys)} was logged")
        for row in reader:
            epoch = row.get("epoch", "")
            if not epoch:
                continue
            for key in keys:
                value = row.get(key, "")
                if value not in ("", None) and not math.isnan(float(value)):
                    sums[key][int(float(epoch))].append(float(value))
    return {
        key: [sum(v) / len(v) for _, v in sorted(sums[key].items())] for key in keys if sums[key]
    }


def plot_loss_curves(runs: list[Path], labels: list[str], out: Path) -> Path:
    """Plot each run's per-modality losses in its own panel, sharing the y-axis, to PNG."""
    from cloudxfer.reporting.figures import pyplot, save_png

    plt = pyplot()

    fig, axes = plt.subplots(
        1, len(runs), figsize=(4.5 * len(runs), 3.6), sharey=True, squeeze=False
    )
    for ax, run, label in zip(axes[0], runs, labels, strict=True):
        curves = epoch_means(run / "metrics.csv", LOSS_KEYS + RHO_KEYS)
        for key in LOSS_KEYS:
            if key in curves:
                epochs = range(1, len(curves[key]) + 1)
                ax.plot(epochs, curves[key], marker="o", ms=3, label=key.split("/")[1])
        rho = [curves.get(key) for key in RHO_KEYS]
        if all(rho) and any(abs(v - 1.0) > 1e-6 for v in rho[0] or []):
            ax.set_title(f"{label}\nmean rho_opt {sum(rho[0]) / len(rho[0]):.2f}")  # type: ignore[arg-type]
        else:
            ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel("distillation loss (epoch mean)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """``cloudxfer plot losses RUN_DIR ... --out fig8.png`` or ``plot cloudy-clear DIR --out``."""
    parser = argparse.ArgumentParser(prog="cloudxfer plot", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    losses = sub.add_parser("losses", help="per-modality loss curves (Fig. 8)")
    losses.add_argument("runs", nargs="+", type=Path, help="run directories (with metrics.csv)")
    losses.add_argument("--out", type=Path, required=True, help="PNG to write")
    losses.add_argument("--labels", nargs="*", default=None, help="panel titles")
    bars = sub.add_parser("cloudy-clear", help="OA on cloudy vs clear tiles per method (Fig. 7)")
    bars.add_argument("results", type=Path, help="a table's output folder (seed*/<method>/)")
    bars.add_argument("--out", type=Path, required=True, help="PNG to write (CSV beside it)")
    sweep = sub.add_parser("cloud-sweep", help="OA against the clouded share (Fig. 9)")
    sweep.add_argument("root", type=Path, help="folder of cloud<percent>/ table folders")
    sweep.add_argument("--out", type=Path, required=True, help="PNG to write (CSV beside it)")
    pool = sub.add_parser("pool", help="OA of f_S, F1 and F2 against the unlabelled pool's size")
    pool.add_argument("root", type=Path, help="folder of pool<N>/ run folders (make fig-pool)")
    pool.add_argument("--out", type=Path, required=True, help="PNG to write (CSV beside it)")
    confusion = sub.add_parser("confusion", help="confusion matrices and per-class recall")
    confusion.add_argument("results", type=Path, help="a table's output folder (seed*/<method>/)")
    confusion.add_argument("--out", type=Path, required=True, help="folder to write into")
    conv = sub.add_parser(
        "convergence", help="train and held-out loss per epoch of each stage, best epoch marked"
    )
    conv.add_argument("run_dir", type=Path, help="a stage folder, or a folder of them")
    conv.add_argument("--out", type=Path, required=True, help="PNG to write (CSV beside it)")
    args = parser.parse_args(argv)
    if args.what != "losses":
        from cloudxfer.reporting import figures

        try:
            if args.what == "cloudy-clear":
                written = list(figures.cloudy_clear_figure(args.results, args.out))
            elif args.what == "cloud-sweep":
                written = list(figures.cloud_sweep_figure(args.root, args.out))
            elif args.what == "pool":
                from cloudxfer.reporting import pool as pool_figure

                series = pool_figure.pool_points(args.root)
                print("\n".join(pool_figure.progress_lines(args.root, series)))
                written = list(pool_figure.pool_figure(args.root, args.out))
            elif args.what == "convergence":
                from cloudxfer.reporting import convergence

                stages = convergence.fitted_stages(args.run_dir)
                written = list(convergence.convergence_figure(stages, args.out))
            else:
                written = figures.confusion_figures(args.results, args.out)
        except ValueError as err:
            parser.error(str(err))
        print("wrote " + ", ".join(map(str, written)))
        return 0
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error("give one label per run")
    path = plot_loss_curves(args.runs, labels, args.out)
    print(f"wrote {path}")
    return 0
