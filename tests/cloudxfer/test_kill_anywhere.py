"""Kill ``cloudxfer fit`` and ``test`` anywhere (SIGKILL), run them again: nothing tells.

A tiny source pre-training (24 classes x 3 images of 32 px, one of each class held out: 6
training and 3 held-out batches per epoch, ShuffleNet-0.5, 3 epochs, one CPU thread) is
fitted once without interruption, then once per case with kills at named points
(``CLOUDXFER_TEST_KILL_AT``, :mod:`datamodules.faults`) or after a time, each followed by the
same command with ``--ckpt_path last`` (or ``last.ckpt``'s path) until one ends. The re-run
must end with the uninterrupted fit's weights (``last.ckpt``, ``best.ckpt``), ``metrics.csv``
(byte for byte: every epoch once, every column) and ``training.json``; a killed ``test`` run
again must write the same ``metrics.json``, ``predictions.csv`` and ``metrics.csv``. Commands
run in children forked from one process that imported everything once (``forkrun.py``), so a
case costs its fits, not interpreter start-ups.

The default cases take a few seconds each (docs/reliability.md states the measured cost); the
``slow`` sweep kills at every point the uninterrupted run passes and at every twentieth of its
wall time.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from cloudxfer.sim import generate_source
from datamodules.faults import KILL_AT_ENV, KILL_TRACE_ENV, parse_kill_spec

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "experiments" / "profiles" / "smoke.yaml"
STAGE = REPO / "experiments" / "methods" / "source_pretrain.yaml"
SWEEP_ENV = "CLOUDXFER_KILL_SWEEP"
sweep = pytest.mark.skipif(
    not os.environ.get(SWEEP_ENV),
    reason=f"the full kill sweep (about 12 minutes on 2 cores): {SWEEP_ENV}=1 pytest -m slow "
    "tests/cloudxfer/test_kill_anywhere.py",
)
"""The sweep is a documented command, not part of ``make test`` (its minutes would double the
suite); the default cases cover every kind of kill point."""
EPOCHS = 3
KILLED = -9


@dataclass
class Run:
    """A command's exit code (``-9``: SIGKILL) and wall time."""

    rc: int
    seconds: float


class Forker:
    """Client of ``forkrun.py``: runs ``cloudxfer`` commands in forked children."""

    def __init__(self, logs: Path) -> None:
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline"}
        env.pop(KILL_AT_ENV, None)
        env.pop(KILL_TRACE_ENV, None)
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("forkrun.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        assert self.process.stdout is not None and self.process.stdout.readline() == "ready\n"
        self.logs = logs
        self.count = 0

    def run(self, args: list[str], **request: Any) -> Run:
        """Run ``cloudxfer *args`` (``env``, ``kill_after``, ``kill_when``, ``delay``)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.count += 1
        log = self.logs / f"{self.count:03d}_{args[0]}.log"
        request = {"args": args, "log": str(log), **request}
        self.process.stdin.write(json.dumps(request, default=str) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        run = Run(reply["rc"], reply["seconds"])
        if run.rc not in (0, KILLED):
            raise AssertionError(f"cloudxfer {' '.join(args)}: rc {run.rc}\n{log.read_text()}")
        return run

    def close(self) -> None:
        """End the server (end of its input)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def forker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forker]:
    server = Forker(tmp_path_factory.mktemp("kill_logs"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kill_data") / "source"
    generate_source(out, per_class=3, seed=4, size=32)
    return out


def fit_args(source: Path, run_root: Path) -> list[str]:
    return [
        "fit",
        "--config", str(SMOKE),
        "--config", str(STAGE),
        f"--profile.source_root={source}",
        f"--profile.run_root={run_root}",
        "--profile.source_backbone=shufflenet_v2_x0_5",
        "--profile.threads=1",
        "--data.init_args.image_size=32",
        "--data.init_args.val_fraction=0.34",
        f"--trainer.max_epochs={EPOCHS}",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip


def eval_args(source: Path, run_root: Path, checkpoint: Path) -> list[str]:
    """``cloudxfer test`` of ``checkpoint``, its outputs under ``run_root``."""
    return ["test", *fit_args(source, run_root)[1:], f"--ckpt_path={checkpoint}"]


@dataclass
class Reference:
    """The uninterrupted fit (and its test) every case compares with."""

    source: Path
    folder: Path  # the stage's run folder
    seconds: float  # the fit's wall time
    fit_points: list[str]  # every kill point the fit reaches, as kill specs (point:n)
    test_points: list[str]  # the same of its test


@pytest.fixture(scope="module")
def reference(forker: Forker, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("kill_reference")
    traces = [root / "fit_points.txt", root / "test_points.txt"]
    fitted = forker.run(fit_args(source, root), env={KILL_TRACE_ENV: str(traces[0])})
    assert fitted.rc == 0
    folder = root / "source_pretrain"
    best = folder / "checkpoints" / "best.ckpt"
    assert forker.run(eval_args(source, root, best), env={KILL_TRACE_ENV: str(traces[1])}).rc == 0
    fit_points, test_points = (path.read_text().split() for path in traces)
    return Reference(source, folder, fitted.seconds, fit_points, test_points)


def _metrics_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def _checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_fit_matches(folder: Path, reference: Path) -> None:
    """The run folder ends as the uninterrupted fit's: weights, metrics.csv, training.json."""
    for name in ("last.ckpt", "best.ckpt"):
        ours, theirs = (_checkpoint(f / "checkpoints" / name) for f in (folder, reference))
        assert (ours["epoch"], ours["global_step"]) == (theirs["epoch"], theirs["global_step"])
        assert ours["state_dict"].keys() == theirs["state_dict"].keys(), name
        for key, value in ours["state_dict"].items():
            assert torch.equal(value, theirs["state_dict"][key]), f"{name}: {key} differs"
    columns, rows = _metrics_rows(folder / "metrics.csv")
    ref_columns, ref_rows = _metrics_rows(reference / "metrics.csv")
    assert columns == ref_columns  # the union of columns, in the same order
    assert rows == ref_rows  # every epoch once, no duplicate
    assert (folder / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    assert (folder / "training.json").read_text() == (reference / "training.json").read_text()
    assert not list((folder / "checkpoints").glob(".*.tmp"))  # no killed writer's leftovers


def kill_and_resume(
    forker: Forker,
    ref: Reference,
    root: Path,
    kills: list[dict[str, Any]],
    resume: str = "last",
) -> int:
    """Run the fit once per kill (each a request), then resumed to its end; count the kills.

    ``resume``: ``--ckpt_path last`` (Lightning finds ``last.ckpt``, or starts afresh where
    there is none) or ``path``: ``last.ckpt``'s path, as the runner gives it, and where the fit
    was killed before writing one, ``--overwrite true`` (what the refusal message offers).
    """
    args = fit_args(ref.source, root)
    last = root / "source_pretrain" / "checkpoints" / "last.ckpt"

    def again() -> list[str]:
        if resume == "last":
            return [*args, "--ckpt_path=last"]
        return [*args, f"--ckpt_path={last}" if last.is_file() else "--overwrite=true"]

    killed = 0
    for attempt, kill in enumerate(kills):
        run = forker.run(args if attempt == 0 else again(), **kill)
        killed += run.rc == KILLED
        if "env" in kill:  # a named point must be reached
            assert run.rc == KILLED, f"{kill} was never reached"
    assert forker.run(again()).rc == 0
    assert_fit_matches(root / "source_pretrain", ref.folder)
    return killed


def test_the_reference_fit_logs_every_epoch_once_with_every_column(reference: Reference) -> None:
    columns, rows = _metrics_rows(reference.folder / "metrics.csv")
    assert columns == sorted(columns)
    assert {"epoch", "step", "loss/source", "val/loss"} <= set(columns)
    validation = [row["epoch"] for row in rows if row["val/loss"]]
    assert validation == [str(epoch) for epoch in range(EPOCHS)]  # one held-out row per epoch
    steps = [(row["epoch"], row["step"]) for row in rows if row["loss/source"]]
    assert len(steps) == len(set(steps)) == 6 * EPOCHS
    record = json.loads((reference.folder / "training.json").read_text())
    assert [epoch["epoch"] for epoch in record["epochs"]] == list(range(EPOCHS))
    # the named points below are where the uninterrupted fit passes
    named = {spec for specs in POINTS.values() for spec in specs}
    assert {parse_kill_spec(spec) for spec in named} <= {
        parse_kill_spec(spec) for spec in reference.fit_points
    }
    assert {parse_kill_spec(spec) for spec in TEST_POINTS} <= {
        parse_kill_spec(spec) for spec in reference.test_points
    }


# Named kill points (each run of a case is killed at one; then resumed to the end). With 6
# training and 3 held-out batches per epoch; checkpoints are written best.ckpt (when the
# held-out loss improved: epochs 0 and 1 here), then last.ckpt.
POINTS: dict[str, list[str]] = {
    "before the first checkpoint": ["train_batch:2"],
    "after a checkpoint, before its epoch's validation": ["train_batch:8"],
    "mid-validation": ["validation_batch:5"],
    "last.ckpt written, not yet renamed": ["write:last.ckpt:2"],
    "best.ckpt renamed, last.ckpt not yet written": ["saved:best.ckpt:1"],
    "metrics.csv rewrite, then the resumed fit's own first write": [
        "write:metrics.csv:2",
        "write:metrics.csv:1",
    ],
    "killed again right after resuming, then mid-validation": [
        "saved:last.ckpt:1",
        "train_batch:1",
        "validation_batch:2",
    ],
    "training.json written, not yet renamed": ["write:training.json"],
}


@pytest.mark.parametrize("specs", POINTS.values(), ids=POINTS.keys())
def test_a_fit_killed_at_a_named_point_resumes_into_the_uninterrupted_run(
    forker: Forker, reference: Reference, tmp_path: Path, specs: list[str]
) -> None:
    kills = [{"env": {KILL_AT_ENV: spec}} for spec in specs]
    assert kill_and_resume(forker, reference, tmp_path, kills) == len(specs)


@pytest.mark.parametrize("resume", ["last", "path"])
def test_the_issue_kill_after_last_ckpt_appears(
    forker: Forker, reference: Reference, tmp_path: Path, resume: str
) -> None:
    """The report: kill 1.5 s (here: a third of an epoch) after ``last.ckpt`` first appears."""
    last = tmp_path / "source_pretrain" / "checkpoints" / "last.ckpt"
    kill = {"kill_when": str(last), "delay": reference.seconds / EPOCHS / 3}
    assert kill_and_resume(forker, reference, tmp_path, [kill], resume) == 1


def test_a_fit_killed_after_a_time_resumes_into_the_uninterrupted_run(
    forker: Forker, reference: Reference, tmp_path: Path
) -> None:
    kill = {"kill_after": 0.6 * reference.seconds}
    kill_and_resume(forker, reference, tmp_path, [kill], resume="path")


TEST_POINTS = ["test_batch:2", "write:predictions.csv"]


def kill_test_and_rerun(forker: Forker, ref: Reference, root: Path, spec: str) -> None:
    """Kill ``cloudxfer test`` at ``spec``, run it again: the uninterrupted test's outputs."""
    args = eval_args(ref.source, root, ref.folder / "checkpoints" / "best.ckpt")
    assert forker.run(args, env={KILL_AT_ENV: spec}).rc == KILLED, f"{spec} was never reached"
    assert forker.run(args).rc == 0
    for name in ("metrics.json", "predictions.csv", "metrics.csv"):
        ours = root / "source_pretrain" / "test" / name
        assert ours.read_bytes() == (ref.folder / "test" / name).read_bytes(), f"{spec}: {name}"


@pytest.mark.parametrize("spec", TEST_POINTS)
def test_a_killed_test_run_again_writes_the_same_outputs(
    forker: Forker, reference: Reference, tmp_path: Path, spec: str
) -> None:
    kill_test_and_rerun(forker, reference, tmp_path, spec)


# The slow sweep (a few minutes): every kill point the uninterrupted fit and test reach, at
# every count, and kills at every twentieth of the fit's wall time and at delays after the
# first last.ckpt appears (the report's procedure).
@pytest.mark.slow
@sweep
def test_sweep_a_fit_killed_at_every_point_it_reaches(
    forker: Forker, reference: Reference, tmp_path: Path
) -> None:
    failures = []
    for case, spec in enumerate(reference.fit_points):
        try:
            kill_and_resume(forker, reference, tmp_path / str(case), [{"env": {KILL_AT_ENV: spec}}])
        except AssertionError as error:
            failures.append(f"{spec}: {str(error).splitlines()[0]}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@sweep
def test_sweep_a_test_killed_at_every_point_it_reaches(
    forker: Forker, reference: Reference, tmp_path: Path
) -> None:
    for case, spec in enumerate(reference.test_points):
        kill_test_and_rerun(forker, reference, tmp_path / str(case), spec)


@pytest.mark.slow
@sweep
@pytest.mark.parametrize("twentieths", range(1, 20))
def test_sweep_a_fit_killed_after_a_time(
    forker: Forker, reference: Reference, tmp_path: Path, twentieths: int
) -> None:
    kill = {"kill_after": twentieths / 20 * reference.seconds}
    resume = "path" if twentieths % 2 else "last"  # both ways of resuming
    kill_and_resume(forker, reference, tmp_path, [kill], resume)


@pytest.mark.slow
@sweep
@pytest.mark.parametrize("epochs_of_delay", [0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
def test_sweep_a_fit_killed_after_last_ckpt_appears(
    forker: Forker, reference: Reference, tmp_path: Path, epochs_of_delay: float
) -> None:
    last = tmp_path / "source_pretrain" / "checkpoints" / "last.ckpt"
    delay = epochs_of_delay * reference.seconds / EPOCHS
    kill = {"kill_when": str(last), "delay": delay}
    kill_and_resume(forker, reference, tmp_path, [kill], resume="path")
