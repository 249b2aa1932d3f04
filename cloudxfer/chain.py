"""Run the whole method as one chain on one seed: the runner's single-chain convenience.

source pretrain -> source fine-tune -> F1 opt -> F1 sar -> F2 (IRM) [-> F2 without IRM] -> test,
each run a ``cloudxfer fit`` / ``test`` subprocess through ``cloudxfer.runner`` (complete
runs are reused, interrupted ones resume from ``last.ckpt``), under ``OUT/runs/<method>``.
At the end the OA/AA/Kappa table (all / cloudy / clear) is printed and written as
``results.md``, with one convergence line per fitted stage, beside ``loss_curves.png`` (Fig. 8)
and ``convergence.png`` (each stage's training and held-out loss per epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from cloudxfer.reporting.tables import format_markdown
from cloudxfer.runner.cli import (
    add_setting_arguments,
    check_data,
    convergence_section,
    execute_and_collect,
    print_commands,
    setting_from,
)
from cloudxfer.runner.plan import plan
from datamodules.runfiles import atomic_write_text

__all__ = ["CHAIN_METHODS", "main"]

CHAIN_METHODS = ("target", "target_noirm")
"""The rows the chain runs (with everything upstream of them)."""


def main(argv: list[str] | None = None) -> int:
    """``cloudxfer chain``: simulate data if asked, run all stages, print the table."""
    parser = argparse.ArgumentParser(prog="cloudxfer chain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--no-compare", action="store_true", help="skip the no-IRM F2 run")
    add_setting_arguments(parser)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="extra CLI overrides for every run (--trainer.x=y) or one method's (--stage.sl.x=y)",
    )
    args, unknown = parser.parse_known_args(argv)
    start = time.perf_counter()
    out: Path = args.out.resolve()
    setting = setting_from(args, parser, out, [*args.overrides, *unknown])
    setting = dataclasses.replace(setting, run_root=lambda seed: out / "runs")
    methods = CHAIN_METHODS[:1] if args.no_compare else CHAIN_METHODS
    runs = plan(methods, [0], setting)
    if args.print_commands:
        print_commands(runs)
        return 0
    check_data(runs)
    rows = execute_and_collect(runs, args.jobs, "cloudxfer chain", args.keep_last, args.reuse_stale)
    if rows is None:
        return 1
    table = format_markdown(rows) + "\n\n" + convergence_section(runs, with_seed=False)
    atomic_write_text(out / "results.md", table + "\n")
    from cloudxfer.reporting.convergence import convergence_figure
    from cloudxfer.reporting.curves import plot_loss_curves

    targets = [run for run in runs if run.method.name in CHAIN_METHODS]
    labels = ["F2 with IRM" if run.method.name == "target" else "F2 without IRM" for run in targets]
    plot = plot_loss_curves([run.directory for run in targets], labels, out / "loss_curves.png")
    curves, _ = convergence_figure([run.directory for run in runs], out / "convergence.png")
    print(f"wrote {plot}, {curves}")
    print("\n" + table)
    print(f"\nArtefacts under {out}")
    print(f"Wall time: {time.perf_counter() - start:.0f} s (simulation included if it ran)")
    return 0
