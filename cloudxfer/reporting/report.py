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
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cloudxfer.files import TRAINING_FILENAME

__all__ = [
    "convergence_summary",
    "find_stage_dirs",
    "format_report",
    "main",
    "protocol_summary",
    "read_record",
    "teacher_agreement_lines",
]

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
    """One line: final train loss, epochs, held-out loss, whether it flattened and finished."""
    conv = training.get("convergence") or {}
    loss = training.get("final_train_loss")
    loss_text = "n/a" if loss is None else f"{loss:.4f}"
    best = conv.get("best_epoch")
    change = conv.get("relative_change")
    share = conv.get("lr_share")
    held_out = (
        "no held-out loss"
        if best is None
        else f"held-out loss {conv.get('final_loss'):.4f} at the end (lowest "
        f"{conv.get('best_loss'):.4f} at epoch {best + 1}), "
        + ("too few epochs to judge" if change is None else f"last-tenth change {change:.1%}")
    )
    lr_text = "n/a" if share is None else f"{share:.1%} of peak"
    return (
        f"final train loss {loss_text}, {conv.get('epochs')} epochs, {held_out}, handed-on "
        f"learning rate {lr_text}, converged: {'yes' if conv.get('met') else 'NO'}"
    )


def protocol_summary(training: dict[str, Any]) -> str:
    """One line: initialisation, schedule, budget, selection rule and the epoch handed on."""
    protocol = training.get("protocol")
    if not protocol:
        return "protocol: not recorded (a run of an older version)"
    handed = protocol.get("handed_on") or {}
    lr = handed.get("lr")
    share = handed.get("lr_share")
    progress = handed.get("schedule_progress")
    epoch = handed.get("epoch")
    return (
        f"protocol: init {protocol.get('initialisation')}; schedule {protocol.get('schedule')} "
        f"over {protocol.get('budget_epochs')} epochs (lr {protocol.get('lr')}, pre-trained "
        f"{protocol.get('lr_pretrained')}); selection {protocol.get('selection')}: epoch "
        f"{'n/a' if epoch is None else epoch + 1} handed on at lr "
        f"{'n/a' if lr is None else f'{lr:.3g}'} "
        f"({'n/a' if share is None else f'{share:.1%}'} of peak), schedule progress "
        f"{'n/a' if progress is None else f'{progress:.2f}'}"
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
    lines.append(protocol_summary(training))
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
    if "tiles_kept" in diag:
        lines.append(
            f"teacher accuracy on the kept tiles {_pct(diag.get('teacher_oa_kept'))} % "
            f"({diag['tiles_kept']} tiles), on the dropped {_pct(diag.get('teacher_oa_dropped'))}"
            f" % ({diag['tiles_dropped']} tiles)"
        )
    lines.extend(teacher_agreement_lines(stage_dir))
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


CONFIDENT = 0.5
"""Teacher confidence (maximum softmax probability) that splits the test tiles: F1's filter."""


def _predictions(path: Path) -> dict[str, tuple[str, float]]:
    """Return tile id -> (prediction, confidence) of a ``predictions.csv`` (empty if absent)."""
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {r["id"]: (r["pred"], float(r["confidence"])) for r in csv.DictReader(handle)}


def teacher_agreement_lines(stage_dir: Path) -> list[str]:
    """On the test tiles: the student's agreement with each teacher, by teacher confidence.

    The teachers are the checkpoints its ``config.yaml`` names (``teacher*`` arguments); each
    teacher's own test predictions sit in its run folder. Tiles where the teacher is confident
    (at least :data:`CONFIDENT`) are those F1's filter would keep.
    """
    config_path = stage_dir / "config.yaml"
    student = _predictions(stage_dir / "test" / "predictions.csv")
    if not student or not config_path.is_file():
        return []
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    init_args = ((config.get("model") or {}).get("init_args")) or {}
    lines = []
    for name, value in sorted(init_args.items()):
        if not name.startswith("teacher") or not value:
            continue
        teacher = _predictions(Path(str(value)).parent.parent / "test" / "predictions.csv")
        shared = [tile for tile in student if tile in teacher]
        if not shared:
            continue
        parts = []
        for label, chosen in (
            ("all", shared),
            ("confident", [t for t in shared if teacher[t][1] >= CONFIDENT]),
            ("uncertain", [t for t in shared if teacher[t][1] < CONFIDENT]),
        ):
            same = sum(student[t][0] == teacher[t][0] for t in chosen)
            share = f"{100 * same / len(chosen):.1f} %" if chosen else "n/a"
            parts.append(f"{label} {share} ({len(chosen)})")
        lines.append(f"test agreement with {name} (teacher confidence >= {CONFIDENT}): "
                     + ", ".join(parts))  # fmt: skip
    return lines


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
