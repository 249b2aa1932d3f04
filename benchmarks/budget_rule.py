"""The budget rule: the smallest epoch budget whose annealed run ends where a longer one does.

For one method (a stage) of a profile, each candidate budget ``B`` (ascending) is trained
with its schedule annealed over exactly ``B`` epochs, and again over ``2 B``; ``B`` passes
when the final held-out loss of the ``B`` run is within ``--tolerance`` (2 %) of the ``2 B``
run's. The stage's own held-out objective decides, nothing else (no test labels, no other
method). The first passing budget is printed; the curves go to a PNG and a CSV.

Upstream runs (the source model for a student, ...) are trained once at the profile's own
budgets by the runner, in ``OUT/upstream``; each budget run is one ``cloudxfer fit`` reading
them. Runs finished earlier are read again, so the command resumes where it stopped.

Usage::

    python -m benchmarks.budget_rule --method aux_opt --candidates 10 20 --profile quick \\
        --out results/budget/aux_opt --pairs 3000 --per-class 700
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cloudxfer.profile import pretraining_of
from cloudxfer.runner.methods import method
from cloudxfer.runner.plan import dataset_path, profile_path, profile_values

TRAINING = "training.json"


def held_out_curve(run: Path) -> list[float]:
    """Return a finished fit's held-out loss per epoch (empty when it has not finished)."""
    path = run / TRAINING
    if not path.is_file():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    return [float(e["val"]["loss"]) for e in record.get("epochs", []) if "val" in e]


def upstream_methods(name: str, profile: dict[str, Any]) -> list[str]:
    """Return the methods a run of ``name`` reads (its card's needs and its pre-training)."""
    m = method(name)
    ups = [up for _, up in m.needs]
    pretraining = pretraining_of(m.card, profile)
    return [*ups, *([pretraining] if pretraining else [])]


def run(cmd: list[str]) -> None:
    """Run a command, streaming its output; stop with its exit code when it fails."""
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=False)
    if done.returncode:
        raise SystemExit(done.returncode)


def main(argv: list[str] | None = None) -> int:
    """Train the candidates, print the verdicts and the budget chosen."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True, help="registered method (its card's budget)")
    parser.add_argument("--candidates", type=int, nargs="+", required=True)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--dataset", default="sen12ms_cloud")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--per-class", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args(argv)
    m = method(args.method)
    if m.card.budget is None:
        parser.error(f"{args.method}: its card names no budget")
    profile_file = profile_path(args.profile)
    profile, _ = profile_values(profile_file)
    out = args.out.resolve()
    upstream = out / "upstream"
    synth = ["--synth", "--pairs", str(args.pairs), "--per-class", str(args.per_class)]
    synth += ["--seed", "0"]
    ups = upstream_methods(args.method, profile)
    data = upstream / "data"
    if ups:
        run([
            sys.executable, "-m", "cloudxfer", "run", "--profile", str(profile_file),
            "--dataset", args.dataset, "--seeds", str(args.seed), "--out", str(upstream),
            *synth, "--methods", *ups,
        ])  # fmt: skip
    else:  # the data alone, simulated as the runner does (same seed: same bytes)
        sizes = {
            "target": ["--pairs", str(args.pairs)],
            "source": ["--per-class", str(args.per_class)],
        }
        for kind, size in sizes.items():
            if not (data / kind).is_dir():
                run([sys.executable, "-m", "cloudxfer", "synth", kind, "--out", str(data / kind),
                     *size, "--seed", "0"])  # fmt: skip
    roots = [f"--profile.data_root={data / 'target'}", f"--profile.source_root={data / 'source'}"]
    budgets = sorted({b for c in args.candidates for b in (c, 2 * c)})
    curves: dict[int, list[float]] = {}
    for budget in budgets:
        folder = out / f"{args.method}-B{budget}"
        if not held_out_curve(folder):
            run([
                sys.executable, "-m", "cloudxfer", "fit", "--config", str(profile_file),
                *(a for path in m.configs for a in ("--config", str(path))),
                *([f"--data={dataset_path(args.dataset)}"] if m.reads == "target" else []),
                f"--profile.run_root={upstream / f'seed{args.seed}'}", *roots,
                f"--profile.seed={args.seed}", f"--trainer.max_epochs={budget}",
                f"--trainer.default_root_dir={folder}", "--overwrite=true",
            ])  # fmt: skip
        curves[budget] = held_out_curve(folder)
    chosen = None
    print(f"{args.method}: final held-out loss per budget (cosine over the budget)")
    for candidate in sorted(args.candidates):
        short, long = curves[candidate][-1], curves[2 * candidate][-1]
        gap = (short - long) / abs(long)
        verdict = gap <= args.tolerance
        print(f"  B={candidate}: {short:.4f} vs 2B={2 * candidate}: {long:.4f} "
              f"({gap:+.1%}) {'passes' if verdict else 'fails'}")  # fmt: skip
        if verdict and chosen is None:
            chosen = candidate
    print(f"{args.method}: budget {chosen if chosen else 'none of the candidates passed'}")
    write_outputs(out, args.method, curves)
    return 0


def write_outputs(out: Path, name: str, curves: dict[int, list[float]]) -> None:
    """Write the held-out curves as CSV and PNG under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with (out / "budget_curves.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["budget", "epoch", "val_loss"])
        for budget, curve in sorted(curves.items()):
            writer.writerows([budget, i + 1, f"{v:.6f}"] for i, v in enumerate(curve))
    fig, ax = plt.subplots(figsize=(6, 4))
    for budget, curve in sorted(curves.items()):
        ax.plot(range(1, len(curve) + 1), curve, label=f"cosine over {budget}")
    ax.set(xlabel="epoch", ylabel="held-out loss", title=f"{name}: budget rule")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "budget_curves.png", dpi=120)
    print(f"wrote {out / 'budget_curves.csv'}, {out / 'budget_curves.png'}")


if __name__ == "__main__":
    raise SystemExit(main())
