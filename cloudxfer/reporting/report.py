"""``cloudxfer report RUN_DIR``: a stage's test metrics beside what explains them.

For each stage folder found (``RUN_DIR`` itself, or its sub-folders, e.g. a chain's ``runs/``)
it prints the test metrics (``test/metrics.json``), whether the stage converged on its
held-out tiles, its final losses, and, for distillation stages, the teachers' pseudo-label
quality, the kept share of the filter, the teachers' agreement and the mean IRM weights and
contributions per epoch (``training.json``, also stored in the checkpoint and in
``metrics.json``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloudxfer.files import TRAINING_FILENAME

__all__ = ["convergence_summary", "find_stage_dirs", "format_report", "main", "read_record"]

METRICS_PATH = Path("test") / "metrics.json"
EPOCH_FIGURES: tuple[tuple[str, str], ...] = (
    ("loss", "train loss"),
    ("irm/rho_opt", "rho_opt"),
    ("irm/rho_sar", "rho_sar"),
    ("irm/s_opt", "S_opt"),
    ("irm/s_sar", "S_sar"),
    ("pseudo/kept_share", "kept"),
    ("pseudo/agreement", "agree"),
)


def read_record(path: Path) -> dict[str, Any] | None:
    """Return a JSON object a run wrote (``training.json``, ``metrics.json``), or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def convergence_summary(training: dict[str, Any]) -> str:
    """One line: final train loss, epochs, the lowest held-out loss and its epoch, the verdict."""
    conv = training.get("convergence") or {}
    loss = training.get("final_train_loss")
    loss_text = "n/a" if loss is None else f"{loss:.4f}"
    best = conv.get("best_epoch")
    best_text = (
        "no held-out loss"
        if best is None
        else f"lowest held-out loss {conv.get('best_loss'):.4f} at epoch {best + 1}"
        f" ({conv.get('epochs_since_best')} epochs before the end; patience "
        f"{conv.get('patience')})"
    )
    return (
        f"final train loss {loss_text}, {conv.get('epochs')} epochs, {best_text}, "
        f"converged: {'yes' if conv.get('met') else 'NO'}"
    )


def find_stage_dirs(run_dir: Path) -> list[Path]:
    """``run_dir`` when it is a stage folder, else its stage sub-folders (sorted)."""

    def is_stage(path: Path) -> bool:
        return (path / TRAINING_FILENAME).is_file() or (path / METRICS_PATH).is_file()

    if is_stage(run_dir):
        return [run_dir]
    return sorted(p for p in run_dir.rglob("*") if p.is_dir() and is_stage(p))


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}"


def format_report(stage_dir: Path) -> str:
    """Return the report of one stage folder as text."""
    metrics = read_record(stage_dir / METRICS_PATH)
    training = read_record(stage_dir / TRAINING_FILENAME)
    if training is None and metrics is not None:
        training = metrics.get("training")
    lines = [f"== {stage_dir}"]
    if metrics is not None:
        kappa = metrics.get("kappa")
        lines.append(
            f"test ({metrics.get('n')} tiles): OA {_pct(metrics.get('oa'))} %, "
            f"AA {_pct(metrics.get('aa'))} %, Kappa {'n/a' if kappa is None else f'{kappa:.3f}'}; "
            f"cloudy OA {_pct(metrics.get('oa_cloudy'))} %, "
            f"clear OA {_pct(metrics.get('oa_clear'))} %"
        )
    else:
        lines.append("test: not run (no test/metrics.json)")
    if not training:
        lines.append("training record: none (no training.json)")
        return "\n".join(lines)
    epochs = training.get("epochs") or []
    lines.append(f"stage {training.get('stage')}: {convergence_summary(training)}")
    lines.append(f"criterion: {(training.get('convergence') or {}).get('criterion')}")
    diag = training.get("diagnostics") or {}
    for name, oa in sorted((diag.get("teacher_oa") or {}).items()):
        lines.append(
            f"teacher {name}: accuracy on the training tiles {_pct(oa.get('all'))} % "
            f"(cloudy {_pct(oa.get('cloudy'))} %, clear {_pct(oa.get('clear'))} %)"
        )
    for pair, value in sorted((diag.get("teacher_agreement") or {}).items()):
        lines.append(f"teacher agreement {pair}: {_pct(value)} %")
    if "kept_share" in diag:
        lines.append(f"pseudo-labels kept by the filter: {_pct(diag['kept_share'])} %")
    if epochs:
        keys = [(k, label) for k, label in EPOCH_FIGURES if k in epochs[-1].get("train", {})]
        header = "epoch " + " ".join(f"{label:>10s}" for _, label in keys) + f" {'val loss':>10s}"
        lines.append(header)
        for entry in epochs:
            train = entry.get("train", {})
            cells = [f"{train[k]:10.4f}" if k in train else f"{'':>10s}" for k, _ in keys]
            val = entry.get("val", {}).get("loss")
            cells.append(f"{val:10.4f}" if val is not None else f"{'-':>10s}")
            lines.append(f"{entry.get('epoch'):5d} " + " ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report of every stage folder under RUN_DIR."""
    parser = argparse.ArgumentParser(prog="cloudxfer report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a stage folder, or a folder of them")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        parser.error(f"{args.run_dir}: not a folder")
    stages = find_stage_dirs(args.run_dir)
    if not stages:
        parser.error(f"{args.run_dir}: no stage folder (training.json or test/metrics.json)")
    print("\n\n".join(format_report(stage) for stage in stages))
    return 0
