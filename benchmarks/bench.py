"""``make bench``: every performance ratio of the suite, each measured within this one run.

Prints ``RATIO <name> <value> (target <op> <number>)`` per ratio and ``FIGURE <name> <value>``
per plain figure, and writes them to ``benchmarks/latest.json``. No timing is asserted in
tests; these ratios are the performance targets.

    python -m benchmarks.bench            # about 5 minutes on 2 CPU cores

Ratios (quick profile's target network, batch and thread count):

- ``loader_store_vs_files``: tiles/s of one cold-start train epoch (a new process) reading the
  packed store vs decoding the per-file GeoTIFFs (cloud pasting on in both).
- ``loader_vs_step``: tiles/s of the store loader vs tiles/s of one F2 training step.
- ``f2_step_vs_plain``: F2 step with cached teacher logits vs a plain supervised step.
- ``lightning_overhead``: N F2 steps under the Lightning Trainer vs a hand-written loop.
- ``irm_overhead``: F2 step with IRM (batch ratios) vs without.
- ``run_fixed_cost_forked_vs_subprocess``: seconds of a run of zero training steps as the
  runner starts it (a forkserver child: imports paid once) vs as a new process.

Figures: CLI start-up (``cloudxfer --help``, ``cloudxfer map --help``, importing the Lightning
CLI), the fixed cost per run both ways, peak RSS of a quick-profile F2 fit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from benchmarks.common import (
    EXPERIMENTS,
    REPO,
    StepTimer,
    fake_teachers,
    profile,
    target_datamodule,
)
from cloudxfer.runtime import configure_threads
from cloudxfer.sim import generate_target
from cloudxfer.stages import TargetDistillation
from cloudxfer.teachers import compute_teacher_logits

TARGETS: dict[str, tuple[str, float]] = {
    "loader_store_vs_files": (">=", 20.0),
    "loader_vs_step": (">=", 2.0),
    "f2_step_vs_plain": ("<=", 1.3),
    "lightning_overhead": ("<=", 1.05),
    "irm_overhead": ("<=", 1.05),
    "gpu_trainer_vs_plain_bf16": (">=", 0.6),
    "run_fixed_cost_forked_vs_subprocess": ("<=", 0.5),
    "cli_map_help_s": ("<=", 1.0),
}
Batch = dict[str, Any]


def report(results: dict[str, Any], name: str, value: float) -> None:
    """Print and record one ratio (with its target) or one figure."""
    if name in TARGETS:
        op, number = TARGETS[name]
        ok = value >= number if op == ">=" else value <= number
        results[name] = {"value": round(value, 4), "target": f"{op} {number:g}", "ok": ok}
        print(f"RATIO {name} {value:.3f} (target {op} {number:g})", flush=True)
    else:
        results[name] = {"value": round(value, 2)}
        print(f"FIGURE {name} {value:.1f}", flush=True)


def cold_epoch(root: Path, store_dir: Path, store: bool, threads: int) -> float:
    """Tiles/s of one cold-start epoch in a new process (benchmarks/loader_epoch.py)."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loader_epoch", "--root", str(root),
         "--store-dir", str(store_dir), "--store", str(int(store)), "--threads", str(threads)],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["tiles_per_s"])


def best_time(step: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Fastest of ``repeats`` timed calls after ``warmup`` untimed ones (seconds)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def sgd(module: torch.nn.Module) -> torch.optim.Optimizer:
    """The quick profile's optimiser (SGD, momentum 0.9, weight decay 5e-4) at lr 1e-2."""
    return torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def optimise(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """One optimiser step on ``loss``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def cycle(loader: Any) -> Iterator[Batch]:
    """Batches of a loader, forever."""
    while True:
        yield from loader


def wall(command: list[str]) -> float:
    """Seconds a command takes as a new process (it must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} failed:\n{done.stderr.decode()[-3000:]}")
    return time.perf_counter() - start


def timed_launch(command: list[str]) -> float:
    """Seconds a command takes as the runner starts it (a forkserver child)."""
    from cloudxfer.runner.launch import launch

    start = time.perf_counter()
    if launch(command) != 0:
        raise SystemExit(f"{' '.join(command[:6])} failed under the runner's launcher")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--pairs", type=int, default=1200, help="target pairs (demo size)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "latest.json")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args()
    prof = profile(args.profile)
    threads = configure_threads(prof.get("threads") or None)
    batch_size = int(prof["batch_size"])
    channels_last = bool(prof.get("channels_last", False))
    work = args.work or Path(tempfile.mkdtemp(prefix="cloudxfer-bench-"))
    root, store_dir = work / "target", work / "store"
    os.environ["CLOUDXFER_STORE_DIR"] = str(store_dir)
    results: dict[str, Any] = {}
    print(f"profile={args.profile} threads={threads} batch={batch_size} "
          f"backbone={prof['target_backbone']} channels_last={channels_last} "
          f"cpu={os.cpu_count()} cuda={torch.cuda.is_available()}", flush=True)  # fmt: skip
    if not root.exists():
        generate_target(root, pairs=args.pairs, seed=0)

    # --- loaders: cold start, new process each -------------------------------------------
    cold_epoch(root, store_dir, True, threads)  # builds the store once
    files = max(cold_epoch(root, store_dir, False, threads) for _ in range(2))
    stored = max(cold_epoch(root, store_dir, True, threads) for _ in range(2))
    report(results, "loader_files_tiles_per_s", files)
    report(results, "loader_store_tiles_per_s", stored)
    report(results, "loader_store_vs_files", stored / files)

    # --- one F2 module of the profile, teachers cached --------------------------------------
    dm = target_datamodule(root, True, store_dir, batch_size=batch_size)
    dm.setup("fit")
    torch.manual_seed(0)
    teachers = fake_teachers(work / "teachers", dm.class_names, prof["target_backbone"],
                             prof["source_backbone"])  # fmt: skip

    def make_module(irm: str) -> TargetDistillation:
        module = TargetDistillation(
            teacher_opt=str(teachers["opt"]), teacher_sar=str(teachers["sar"]),
            teacher_source=str(teachers["source"]), backbone=prof["target_backbone"],
            irm=irm, class_names=dm.class_names, normalisation=dm.normalisation,
            channels_last=channels_last, lr=float(prof["lr"]),
        )  # fmt: skip
        module.setup("fit")
        module.configure_model()
        return module

    module = make_module("batch")
    dataset = dm.subset_dataset(dm.train_subset)
    cached = compute_teacher_logits(module._teachers, dataset, channels_last=channels_last)
    module._teacher_logits = cached
    loader = dm.train_dataloader()
    start = time.perf_counter()
    n_tiles = sum(len(b["id"]) for b in loader)
    loader_rate = n_tiles / (time.perf_counter() - start)
    batch = module.on_after_batch_transfer(next(iter(loader)), 0)
    optimizer = sgd(module)

    def f2_step() -> None:
        optimise(module.compute_loss(batch)[0], optimizer)

    def plain_step() -> None:
        optimise(F.cross_entropy(module(batch), batch["label"]), optimizer)

    t_f2 = best_time(f2_step, args.steps)
    t_plain = best_time(plain_step, args.steps)
    report(results, "f2_step_tiles_per_s", batch_size / t_f2)
    report(results, "loader_vs_step", loader_rate / (batch_size / t_f2))
    report(results, "f2_step_vs_plain", t_f2 / t_plain)
    no_irm = make_module("none")
    no_irm.model.load_state_dict(module.model.state_dict())
    no_irm._teacher_logits = cached
    optimizer_none = sgd(no_irm)

    def f2_step_none() -> None:
        optimise(no_irm.compute_loss(batch)[0], optimizer_none)

    ratios = []
    for _ in range(3):  # alternate, so drift of the machine hits both alike
        ratios.append(
            best_time(f2_step, args.steps // 2) / best_time(f2_step_none, args.steps // 2)
        )
    report(results, "irm_overhead", sorted(ratios)[1])

    # --- Lightning Trainer vs a hand-written loop over the same loader ----------------------
    steps, skip = args.steps + 3, 3
    lightning_s, hand_s = [], []
    for _ in range(2):
        timer = StepTimer(skip)
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_steps=steps, logger=False,
            default_root_dir=work / "lightning", enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer],
        )  # fmt: skip
        fresh = make_module("batch")
        fresh.configure_optimizers = lambda m=fresh: sgd(m)  # type: ignore[method-assign]
        trainer.fit(fresh, datamodule=dm)
        lightning_s.append((timer.end - timer.start) / (steps - skip))
        hand = make_module("batch")
        hand._teacher_logits = cached
        opt = sgd(hand)
        hand.train()
        batches = cycle(dm.train_dataloader())
        for i in range(steps):
            if i == skip:
                start = time.perf_counter()
            b = hand.on_after_batch_transfer(next(batches), 0)
            optimise(hand.compute_loss(b)[0], opt)
        hand_s.append((time.perf_counter() - start) / (steps - skip))
    report(results, "lightning_overhead", min(lightning_s) / min(hand_s))

    # --- peak memory of one quick-profile F2 fit (subprocess) -------------------------------
    run_root = work / "runs"
    command = [
        sys.executable, "-m", "cloudxfer", "fit",
        "--config", str(EXPERIMENTS / "profiles" / f"{args.profile}.yaml"),
        "--config", str(EXPERIMENTS / "methods" / "target.yaml"),
        f"--data={EXPERIMENTS / 'data' / 'sen12ms_cloud.yaml'}",
        f"--profile.data_root={root}", f"--profile.run_root={run_root}",
        f"--model.init_args.teacher_opt={teachers['opt']}",
        f"--model.init_args.teacher_sar={teachers['sar']}",
        f"--model.init_args.teacher_source={teachers['source']}",
        "--model.init_args.init=scratch",  # no source pre-training here
        "--trainer.max_epochs=1",
    ]  # fmt: skip
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as fit:
        _, status, usage = os.wait4(fit.pid, 0)  # this child's own peak RSS (KiB on Linux)
        fit.returncode = os.waitstatus_to_exitcode(status)
        stderr = fit.stderr.read().decode() if fit.stderr else ""
    if fit.returncode != 0:
        raise SystemExit(f"F2 fit failed:\n{stderr[-3000:]}")
    report(results, "f2_fit_peak_rss_mib", usage.ru_maxrss / 1024)

    # --- fixed costs: CLI start-up, and a run of zero training steps as the runner starts it
    report(results, "cli_help_s", wall([sys.executable, "-m", "cloudxfer", "--help"]))
    report(results, "cli_map_help_s", wall([sys.executable, "-m", "cloudxfer", "map", "--help"]))
    report(results, "import_lightning_cli_s",
           wall([sys.executable, "-c", "import cloudxfer.lightning_cli"]))  # fmt: skip
    empty = [*command[:-1], "--trainer.max_epochs=1", "--trainer.limit_train_batches=0",
             "--trainer.limit_val_batches=0", "--overwrite=true"]  # fmt: skip
    subprocess_s = wall(empty)
    forked_s = min(timed_launch(empty) for _ in range(2))  # the first one starts the server
    report(results, "run_fixed_cost_subprocess_s", subprocess_s)
    report(results, "run_fixed_cost_forked_s", forked_s)
    report(results, "run_fixed_cost_forked_vs_subprocess", forked_s / subprocess_s)

    if torch.cuda.is_available():
        from benchmarks.gpu import trainer_vs_plain_bf16

        gpu = trainer_vs_plain_bf16(prof["target_backbone"])
        name = torch.cuda.get_device_name()
        print(f"GPU {name}: bf16 train img/s Trainer {gpu.trainer:.0f}, plain {gpu.plain:.0f}")
        report(results, "gpu_trainer_vs_plain_bf16", gpu.ratio)
    else:
        print("GPU figures: no GPU on this machine (run make bench where one is lent)")
    args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.json}")
    failed = [name for name, r in results.items() if r.get("ok") is False]
    if failed:
        print(f"targets missed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
