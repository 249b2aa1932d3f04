"""Execute planned runs as ``cloudxfer fit`` / ``test`` commands: reuse, resume, report.

Each command runs in a fresh child (:mod:`cloudxfer.runner.launch`).

A run whose folder holds a finished fit of the same id (``stage_done.json``) and a valid
checkpoint of its stage is reused; one of the same configuration made by other code is
reported and fitted again (or, with ``reuse_stale``, kept and marked); one interrupted mid-way
resumes from its ``last.ckpt``; a folder holding a fit of another configuration is refused,
never silently reused (a folder whose fit never started, e.g. a setup that failed, is simply
taken over). Each run folder is claimed with a lock (a soft lock file with the holder's host
and process, reclaimed when that process is gone), so two runners on one output folder never
train the same run twice. A finished run whose
checkpoint does not load (truncated, damaged, missing) is fitted again from scratch, and so is
an interrupted one whose ``last.ckpt`` does not load, each with one line saying why. Each
finished run prints one progress line with its test metrics and wall time. ``jobs`` > 1 runs
independent runs side by side, one GPU each where there are enough. A fit that finished drops
its ``last.ckpt`` (only an interrupted fit resumes from it) unless ``keep_last`` is set: it
halves a run folder's size.

With a share folder, a source-domain run (``PlannedRun.share_key``) that finished anywhere is
trained once: its folder is copied into the share folder when it finishes, and a run of the
same key in another table or figure level copies it from there instead of fitting.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from filelock import SoftFileLock, Timeout

from cloudxfer.reporting.report import read_record
from cloudxfer.runner.launch import launch
from cloudxfer.runner.plan import CHECKPOINT, METRICS, RECORD_FILENAME, PlannedRun
from datamodules.faults import kill_point
from datamodules.runfiles import write_json

__all__ = [
    "DONE_FILENAME",
    "RunnerError",
    "checkpoint_problem",
    "execute",
    "fit_finished",
    "fit_stale",
    "stale_runs",
]

DONE_FILENAME = "stage_done.json"
LOCK_FILENAME = ".run.lock"
"""A run folder's lock (held while the runner fits or tests the run)."""
SHARED_FILENAME = "shared.json"
"""What a share folder entry records: the share key, the method and where it was trained."""
_RUN_FILES = (RECORD_FILENAME, DONE_FILENAME, SHARED_FILENAME, LOCK_FILENAME)
"""A run folder's own records: never copied to or from the share folder."""


class RunnerError(RuntimeError):
    """A run cannot start or failed; the message names the run and its folder."""


def fit_finished(run: PlannedRun, reuse_stale: bool = False) -> bool:
    """Whether the run's folder records a finished fit of this id (its checkpoint unchecked).

    With ``reuse_stale``, a finished fit of the same configuration made by other code counts.
    """
    done = read_record(run.directory / DONE_FILENAME)
    if done is None:
        return False
    return done.get("id") == run.run_id or (reuse_stale and fit_stale(run))


def fit_stale(run: PlannedRun) -> bool:
    """Whether the folder holds a finished fit of this configuration made by other code."""
    done = read_record(run.directory / DONE_FILENAME)
    return (
        done is not None and done.get("config_id") == run.config_id and done.get("id") != run.run_id
    )


def _done_record(run: PlannedRun, **extra: str) -> dict[str, str]:
    return {"id": run.run_id, "config_id": run.config_id, "code": run.code, **extra}


def checkpoint_problem(run: PlannedRun, path: Path) -> str | None:
    """Say what keeps the checkpoint at ``path`` from serving this run, or None when it can.

    The file is loaded with its weights mapped, not read: a truncated file or a damaged record
    fails to load all the same, and a large checkpoint costs no second full read.
    """
    from cloudxfer.checkpoints import CheckpointError, read_metadata  # torch: imported late

    if not path.is_file():
        return f"checkpoint {path} is missing"
    try:
        stage = read_metadata(path, mmap=True)["stage"]
    except CheckpointError as err:
        return f"checkpoint {path} is unreadable ({str(err).removeprefix(f'{path}: ')})"
    if stage != run.method.stage:
        return f"checkpoint {path} is from stage {stage!r}, not {run.method.stage!r}"
    return None


def _claim(run: PlannedRun) -> None:
    """Record the run in its folder, refusing a folder that holds another configuration's fit.

    A record whose fit left no checkpoint (its setup failed, or it was killed before its first
    epoch) holds nothing to protect: the folder is this run's.
    """
    record = read_record(run.directory / RECORD_FILENAME)
    trained = run.checkpoint.is_file() or run.resume_checkpoint.is_file()
    if record is None and trained:
        raise RunnerError(
            f"{run.directory}: holds a checkpoint but no run record ({RECORD_FILENAME}), so "
            "what made it is unknown; remove the folder or choose another output folder"
        )
    if record is not None and trained and record.get("config_id") != run.config_id:
        raise RunnerError(
            f"{run.directory}: holds run {record.get('id')} of another configuration "
            f"(this one is {run.run_id}); remove the folder or choose another output folder"
        )
    write_json(run.directory / RECORD_FILENAME, run.describe())


def _call(run: PlannedRun, args: list[str], env: dict[str, str] | None) -> None:
    code = launch(args, env)
    if code != 0:
        raise RunnerError(
            f"{run.method.name} (seed {run.seed}) failed with exit code {code}; "
            f"its output is above, its folder is {run.directory}"
        )


def _metrics_line(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "fitted (no test: an upstream stage)"
    return "  ".join(
        f"{name} {100 * metrics[key]:.2f}" if name != "Kappa" else f"{name} {metrics[key]:.3f}"
        for name, key in (("OA", "oa"), ("AA", "aa"), ("Kappa", "kappa"))
        if metrics.get(key) is not None
    )


def _done_code(run: PlannedRun) -> str:
    return str((read_record(run.directory / DONE_FILENAME) or {}).get("code", "unknown"))


def _fit_start(
    run: PlannedRun, log: Callable[[str], None], reuse_stale: bool = False
) -> list[str] | None:
    """Return how the run's fit starts (resume or afresh), or None: it is finished and sound.

    The folder is this run's (claimed by its id). A finished fit whose result does not load is
    fitted again from scratch (its ``last.ckpt`` ended that fit: resuming would not rewrite the
    result); an interrupted one resumes its last epoch, or starts again when that checkpoint
    does not load or a fit killed before its first epoch left none.
    """
    name = f"{run.method.name} seed {run.seed}"
    if fit_finished(run, reuse_stale):
        problem = checkpoint_problem(run, run.checkpoint)
        if problem is None:
            if fit_stale(run):
                log(f"{name}: made by other code (code {_done_code(run)}, now {run.code}); "
                    "kept (--reuse-stale)")  # fmt: skip
            return None
        log(f"{name}: {problem}; re-running")
        return ["--overwrite=true"]
    if fit_stale(run):
        log(f"{name}: made by other code (code {_done_code(run)}, now {run.code}); re-running "
            "(--reuse-stale keeps it)")  # fmt: skip
        return ["--overwrite=true"]
    last = run.resume_checkpoint
    if not last.is_file():
        return ["--overwrite=true"]
    problem = checkpoint_problem(run, last)
    if problem is None:
        return [f"--ckpt_path={last}"]
    log(f"{name}: {problem}; starting again instead of resuming")
    return ["--overwrite=true"]


def _shared_copy(run: PlannedRun, log: Callable[[str], None]) -> Path | None:
    """Return the share folder's finished run of this run's key, or None (none, or unusable)."""
    shared = run.shared_directory
    if shared is None or not shared.is_dir():
        return None
    record = read_record(shared / SHARED_FILENAME)
    if record is None or record.get("share_key") != run.share_key:
        log(f"{run.method.name} seed {run.seed}: {shared} does not record share key "
            f"{run.share_key}; not used")  # fmt: skip
        return None
    problem = checkpoint_problem(run, shared / CHECKPOINT)
    if problem is not None:
        log(f"{run.method.name} seed {run.seed}: shared copy not used: {problem}")
        return None
    return shared


def _copy_run_files(source: Path, destination: Path) -> None:
    """Copy a run folder's files (not its records) into ``destination``."""
    shutil.copytree(
        source,
        destination,
        ignore=lambda folder, names: [n for n in names if n in _RUN_FILES],
        dirs_exist_ok=True,
        copy_function=_copy_file,
    )


def _copy_file(source: str, destination: str) -> str:
    """Copy one file of a run folder (``runner:copy``: a kill point of the crash tests)."""
    kill_point("runner:copy")
    return str(shutil.copy2(source, destination))


def _publish(run: PlannedRun) -> None:
    """Put a finished source-domain run into the share folder, unless a usable copy is there.

    Written under a temporary name and renamed, so a reader never sees half a copy; files are
    copied, not linked (a later re-fit of the run rewrites its checkpoints in place).
    """
    shared = run.shared_directory
    if shared is None or _shared_copy(run, lambda _: None) is not None:
        return
    shared.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{shared.name}-", dir=shared.parent))
    try:
        _copy_run_files(run.directory, staging)
        write_json(staging / SHARED_FILENAME, {"share_key": run.share_key,
                   "method": run.method.name, "seed": run.seed,
                   "trained_in": str(run.directory), "run_id": run.run_id})  # fmt: skip
        if shared.exists():
            shutil.rmtree(shared)  # an unusable copy (checked above)
        os.replace(staging, shared)
    except OSError:
        if _shared_copy(run, lambda _: None) is None:
            raise
        # another runner published the same training meanwhile: keep that copy
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed


def run_one(
    run: PlannedRun,
    env: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
    keep_last: bool = False,
    reuse_stale: bool = False,
) -> tuple[dict[str, Any] | None, str]:
    """Fit (or reuse, resume, or copy from the share folder) and test one run, under its lock.

    A finished fit's ``last.ckpt`` is deleted unless ``keep_last``: a finished run is reused
    or, if its result does not load, fitted again from scratch, never resumed. A runner that
    finds the run's folder locked by another waits for it (saying so once), then reuses what
    that one finished.

    Returns:
        Its test metrics (None: an untested upstream stage) and how it was done: ``ran``,
        ``reused`` (nothing had to run), ``reused, made by other code`` (``reuse_stale``) or
        ``shared from <folder>``.

    """
    run.directory.mkdir(parents=True, exist_ok=True)
    lock = SoftFileLock(run.directory / LOCK_FILENAME)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"{run.method.name} seed {run.seed}: another runner holds {run.directory}; waiting")
        lock.acquire()
    try:
        return _run_locked(run, env, log, keep_last, reuse_stale)
    finally:
        lock.release()


def _run_locked(
    run: PlannedRun,
    env: dict[str, str] | None,
    log: Callable[[str], None],
    keep_last: bool,
    reuse_stale: bool,
) -> tuple[dict[str, Any] | None, str]:
    _claim(run)
    metrics_path = run.directory / METRICS
    how = "reused, made by other code" if reuse_stale and fit_stale(run) else "reused"
    shared = None if fit_finished(run, reuse_stale) else _shared_copy(run, log)
    if shared is not None:
        metrics_path.unlink(missing_ok=True)
        _copy_run_files(shared, run.directory)
        write_json(run.directory / DONE_FILENAME, _done_record(run,
                   checkpoint=str(CHECKPOINT), shared_from=str(shared)))  # fmt: skip
        how = f"shared from {shared}"
    start = _fit_start(run, log, reuse_stale)
    if start is not None:
        (run.directory / DONE_FILENAME).unlink(missing_ok=True)
        metrics_path.unlink(missing_ok=True)  # a new fit makes the old scores stale
        _call(run, [*run.command("fit"), *start], env)
        write_json(run.directory / DONE_FILENAME, _done_record(run, checkpoint=str(CHECKPOINT)))
        kill_point("runner:fitted")  # the crash tests' kill between a fit and its test
        if not keep_last:
            run.resume_checkpoint.unlink(missing_ok=True)
        how = "ran"
    if shared is None:  # a copy from the share folder is there already
        _publish(run)
    if not run.method.tested:
        return None, how
    if read_record(metrics_path) is None:
        _call(run, run.command("test"), env)
        how = "ran"
    return read_record(metrics_path), how


def _gpu_envs(jobs: int) -> list[dict[str, str] | None]:
    """Environment per job slot: one GPU each when there are at least as many GPUs as jobs."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA: every job sees the same devices
        count = 0
    if jobs <= 1 or count < jobs:
        return [None] * max(jobs, 1)
    return [{**os.environ, "CUDA_VISIBLE_DEVICES": str(slot)} for slot in range(jobs)]


def execute(
    runs: Sequence[PlannedRun],
    jobs: int = 1,
    log: Callable[[str], None] = print,
    keep_last: bool = False,
    reuse_stale: bool = False,
) -> dict[tuple[str, int], dict[str, Any] | None]:
    """Run everything in dependency order (``jobs`` at a time); return test metrics per run.

    ``keep_last`` keeps each finished fit's ``last.ckpt`` and ``reuse_stale`` keeps runs made
    by other code (see :func:`run_one`); :func:`stale_runs` lists those afterwards.
    """
    results: dict[tuple[str, int], dict[str, Any] | None] = {}
    pending = list(runs)
    total = len(pending)
    start = time.perf_counter()

    def report(run: PlannedRun, outcome: tuple[dict[str, Any] | None, str], began: float) -> None:
        metrics, how = outcome
        results[run.key] = metrics
        if how == "ran":
            how = f"{time.perf_counter() - began:.0f} s"
        log(f"[{len(results)}/{total}] {run.method.name} seed {run.seed}: "
            f"{_metrics_line(metrics)} ({how}; {run.directory})")  # fmt: skip

    def ready(run: PlannedRun) -> bool:
        return all(up.key in results for up in run.upstream)

    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        running: dict[Future[tuple[dict[str, Any] | None, str]], tuple[PlannedRun, int, float]]
        running = {}
        envs = _gpu_envs(jobs)
        free = list(range(len(envs)))
        while pending or running:
            for run in [r for r in pending if ready(r)]:
                if not free:
                    break
                pending.remove(run)
                slot = free.pop(0)
                future = pool.submit(run_one, run, envs[slot], log, keep_last, reuse_stale)
                running[future] = (run, slot, time.perf_counter())
            if not running:
                names = ", ".join(f"{r.method.name}/{r.seed}" for r in pending)
                raise RunnerError(f"runs wait on upstream runs that never ran: {names}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                run, slot, began = running.pop(future)
                free.append(slot)
                report(run, future.result(), began)
    log(f"{total} runs done in {time.perf_counter() - start:.0f} s")
    return results


def stale_runs(runs: Sequence[PlannedRun]) -> list[PlannedRun]:
    """Return the runs whose finished fit was made by other code (kept with ``reuse_stale``)."""
    return [run for run in runs if fit_stale(run)]
