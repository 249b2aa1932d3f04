"""Run the whole method as a chain of stages, passing checkpoints along; resumable.

source pretrain -> source fine-tune -> F1 opt -> F1 sar -> F2 (IRM) [-> F2 without IRM] -> test.
Each stage is one ``cloudxfer fit`` in a subprocess (so DDP launchers and memory stay per stage);
a stage whose checkpoint is complete and valid is skipped, one interrupted mid-way resumes from
its ``last.ckpt``. At the end every target-domain model is tested and the OA/AA/Kappa table
(all / cloudy / clear) is printed and written as ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloudxfer.checkpoints import CheckpointError, read_metadata
from cloudxfer.diagnostics import TRAINING_FILENAME, convergence
from cloudxfer.reporting.report import convergence_summary, read_record
from cloudxfer.runtime import available_cores

__all__ = ["STAGES", "Stage", "main", "run_chain"]

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
CONVERGENCE_TEXT = convergence([])["criterion"]


@dataclass(frozen=True)
class Stage:
    """One step of the chain: its run-directory name, stage config and what it tests."""

    name: str
    config: str
    stage: str
    tested: bool = True
    label: str = ""
    extra: tuple[str, ...] = field(default_factory=tuple)


STAGES: tuple[Stage, ...] = (
    Stage("source_pretrain", "source_pretrain.yaml", "source_pretrain", tested=False),
    Stage("source_finetune", "source_finetune.yaml", "source_finetune", label="Source f_S (opt)"),
    Stage("aux_opt", "aux_opt.yaml", "auxiliary", label="F1 auxiliary (opt)"),
    Stage("aux_sar", "aux_sar.yaml", "auxiliary", label="F1 auxiliary (SAR)"),
    Stage("target", "target.yaml", "target", label="F2 target, IRM (opt & SAR)"),
)
NO_IRM = Stage(
    "target_noirm",
    "target.yaml",
    "target",
    label="F2 target, no IRM (opt & SAR)",
    extra=("--model.init_args.irm", "none"),
)


def _checkpoint(run_root: Path, stage: Stage) -> Path:
    return run_root / stage.name / "checkpoints" / "last.ckpt"


def _done_marker(run_root: Path, stage: Stage) -> Path:
    return run_root / stage.name / "stage_done.json"


def stage_complete(run_root: Path, stage: Stage) -> bool:
    """Return True when the stage finished (marker written) and its checkpoint is valid."""
    if not _done_marker(run_root, stage).is_file():
        return False
    try:
        return read_metadata(_checkpoint(run_root, stage))["stage"] == stage.stage
    except CheckpointError:
        return False


def _cli(command: str, configs: list[Path], overrides: list[str]) -> list[str]:
    args = [sys.executable, "-m", "cloudxfer", command]
    for config in configs:
        args += ["--config", str(config)]
    return args + overrides


def _run(args: list[str]) -> None:
    print("+", " ".join(args[2:]), flush=True)
    subprocess.run(args, check=True)


def run_chain(
    profile: Path,
    dataset_dir: Path,
    run_root: Path,
    overrides: list[str],
    compare_no_irm: bool = True,
) -> list[tuple[str, dict[str, float | None]]]:
    """Fit every stage (skipping complete ones), test the target-domain models, return rows."""
    stages = [*STAGES, NO_IRM] if compare_no_irm else list(STAGES)
    common = [f"--profile.run_root={run_root}", *overrides]
    for stage in stages:
        configs = [profile, dataset_dir / stage.config]
        overrides_stage = [
            *common,
            *stage.extra,
            f"--trainer.default_root_dir={run_root / stage.name}",
        ]
        if stage_complete(run_root, stage):
            print(f"= {stage.name}: complete, skipped ({_checkpoint(run_root, stage)})", flush=True)
        else:
            resume = _checkpoint(run_root, stage)
            extra = [f"--ckpt_path={resume}"] if resume.is_file() else []
            _run(_cli("fit", configs, [*overrides_stage, *extra]))
            _done_marker(run_root, stage).write_text(
                json.dumps({"checkpoint": str(_checkpoint(run_root, stage))}) + "\n"
            )
        if stage.tested:
            _run(
                _cli(
                    "test",
                    configs,
                    [*overrides_stage, f"--ckpt_path={_checkpoint(run_root, stage)}"],
                )
            )
    rows = []
    for stage in stages:
        if stage.tested:
            metrics = json.loads((run_root / stage.name / "test" / "metrics.json").read_text())
            rows.append((stage.label, metrics))
    return rows


def format_table(rows: list[tuple[str, dict[str, float | None]]]) -> str:
    """Markdown table of OA (%), AA (%) and Kappa for all, cloudy and clear test tiles."""

    def cell(metrics: dict[str, float | None], key: str, percent: bool) -> str:
        value = metrics.get(key)
        if value is None:
            return "n/a"
        return f"{100 * value:.2f}" if percent else f"{value:.3f}"

    header = (
        "| model | OA | AA | Kappa | OA cloudy | AA cloudy | Kappa cloudy "
        "| OA clear | AA clear | Kappa clear |"
    )
    lines = [header, "|" + "---|" * 10]
    for label, m in rows:
        cells = []
        for suffix in ("", "_cloudy", "_clear"):
            cells += [
                cell(m, f"oa{suffix}", True),
                cell(m, f"aa{suffix}", True),
                cell(m, f"kappa{suffix}", False),
            ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if rows:
        m = rows[-1][1]
        lines.append(
            f"\nTest tiles: {m.get('n')} ({m.get('n_cloudy')} cloudy, {m.get('n_clear')} clear)."
        )
    return "\n".join(lines)


def convergence_lines(run_root: Path, stages: list[Stage]) -> list[str]:
    """One line per fitted stage: final train loss and whether its held-out loss flattened."""
    lines = []
    for stage in stages:
        path = run_root / stage.name / TRAINING_FILENAME
        record = read_record(path)
        summary = f"no training record ({path})" if record is None else convergence_summary(record)
        lines.append(f"{stage.name}: {summary}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``cloudxfer chain``: simulate data if asked, run all stages, print the table."""
    parser = argparse.ArgumentParser(prog="cloudxfer chain", description=__doc__)
    parser.add_argument("--profile", default="quick", help="profile name or YAML path")
    parser.add_argument("--dataset", default="sen12ms_cloud", help="folder under experiments/")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--data-root", type=Path, default=None, help="target data root")
    parser.add_argument("--source-root", type=Path, default=None, help="source data root")
    parser.add_argument(
        "--synth", action="store_true", help="simulate missing data under OUT/data first"
    )
    parser.add_argument("--pairs", type=int, default=1200, help="simulated target pairs")
    parser.add_argument("--per-class", type=int, default=60, help="simulated source images")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--no-compare", action="store_true", help="skip the no-IRM F2 run")
    parser.add_argument("overrides", nargs="*", help="extra CLI overrides, e.g. --trainer.x=y")
    args, unknown = parser.parse_known_args(argv)
    overrides = [*args.overrides, *unknown]
    start = time.perf_counter()

    profile = Path(args.profile)
    if not profile.suffix:
        profile = EXPERIMENTS / "profiles" / f"{args.profile}.yaml"
    dataset_dir = EXPERIMENTS / args.dataset
    for path in (profile, dataset_dir):
        if not path.exists():
            parser.error(f"{path}: not found")
    out: Path = args.out.resolve()
    data_root = (args.data_root or out / "data" / "target").resolve()
    source_root = (args.source_root or out / "data" / "source").resolve()
    if args.synth:
        from cloudxfer.sim.cli import main as synth

        scheme = "hunan" if args.dataset == "cloudy_pairs" else "sen12ms_cloud"
        if not data_root.exists():
            synth(["target", "--out", str(data_root), "--pairs", str(args.pairs),
                   "--seed", str(args.seed), "--scheme", scheme,
                   "--workers", str(available_cores())])  # fmt: skip
        if not source_root.exists():
            synth(["source", "--out", str(source_root), "--per-class", str(args.per_class),
                   "--seed", str(args.seed), "--workers", str(available_cores())])  # fmt: skip
    overrides = [
        f"--profile.data_root={data_root}",
        f"--profile.source_root={source_root}",
        *overrides,
    ]
    rows = run_chain(profile, dataset_dir, out / "runs", overrides, not args.no_compare)
    stages = [*STAGES] + ([] if args.no_compare else [NO_IRM])
    converged = convergence_lines(out / "runs", stages)
    criterion = f"Convergence ({CONVERGENCE_TEXT}):"
    table = format_table(rows) + "\n\n" + criterion + "\n" + "\n".join(converged)
    (out / "results.md").write_text(table + "\n")
    from cloudxfer.reporting.curves import plot_loss_curves

    runs = [out / "runs" / "target"] + ([] if args.no_compare else [out / "runs" / "target_noirm"])
    labels = ["F2 with IRM"] + ([] if args.no_compare else ["F2 without IRM"])
    print(f"wrote {plot_loss_curves(runs, labels, out / 'loss_curves.png')}")
    print("\n" + table)
    print(f"\nArtefacts under {out}")
    print(f"Wall time: {time.perf_counter() - start:.0f} s (simulation included if it ran)")
    return 0
