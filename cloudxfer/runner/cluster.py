"""Submit a plan's runs as cluster jobs through submitit, one job a run, in dependency order.

Each job runs :func:`~cloudxfer.runner.executor.run_one`, the function the local runner calls:
the same reuse, resume, lock and share-folder rules, the same ``cloudxfer fit`` / ``test``
commands. On SLURM a job waits for its upstream runs' jobs with ``afterok`` dependencies; with
submitit's local executor (tests, a workstation) the submitter waits for them itself, since no
scheduler holds the job. Finished runs are never submitted, so re-submitting a partly finished
plan submits only what is missing; the table is written by the same ``cloudxfer run`` command
without ``--executor`` once the jobs are done (it reuses every run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cloudxfer.runner.executor import fit_finished, run_one
from cloudxfer.runner.plan import METRICS, PlannedRun

__all__ = ["ClusterOptions", "job_parameters", "pending", "submit"]


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the jobs run (the ``--executor`` and ``--slurm-*`` options)."""

    kind: Literal["slurm", "local"]
    """``slurm`` (sbatch through submitit) or ``local`` (submitit's local processes)."""
    folder: Path
    """submitit's folder: each job's script, pickled call, logs and result."""
    partition: str | None = None
    account: str | None = None
    time_min: int = 240
    """Wall-time limit of each job, minutes."""
    gpus: int = 1
    """GPUs per job (one run each; a run asking for more passes ``--trainer.devices``)."""
    cpus: int | None = None
    """CPUs per job (None: the cluster's default)."""


def job_parameters(
    run: PlannedRun, depends_on: Sequence[str], options: ClusterOptions
) -> dict[str, Any]:
    """Return the submitit parameters of one run's job (``AutoExecutor.update_parameters``)."""
    params: dict[str, Any] = {
        "name": f"{run.method.name}-seed{run.seed}",
        "timeout_min": options.time_min,
    }
    if options.kind == "slurm":
        params["gpus_per_node"] = options.gpus
        params["slurm_partition"] = options.partition
        params["slurm_account"] = options.account
        params["cpus_per_task"] = options.cpus
        if depends_on:
            params["slurm_dependency"] = "afterok:" + ":".join(depends_on)
    return {key: value for key, value in params.items() if value is not None}


def pending(run: PlannedRun) -> bool:
    """Whether a run still has work: an unfinished fit, or a scored run without its test."""
    if not fit_finished(run):
        return True
    return run.method.tested and not (run.directory / METRICS).is_file()


def submit(
    runs: Sequence[PlannedRun],
    options: ClusterOptions,
    log: Callable[[str], None] = print,
    keep_last: bool = False,
) -> dict[tuple[str, int], Any]:
    """Submit every pending run (upstream first) as one job; return the jobs by run key.

    A run whose upstream runs are all finished has no dependency. With the local executor the
    submitter waits for a run's upstream jobs before submitting it.
    """
    import submitit  # imported where a plan is submitted

    cluster = "slurm" if options.kind == "slurm" else "local"
    executor = submitit.AutoExecutor(folder=options.folder, cluster=cluster)
    jobs: dict[tuple[str, int], Any] = {}
    for run in runs:
        if run.key in jobs:
            continue
        if not pending(run):
            log(f"{run.method.name} seed {run.seed}: finished, not submitted")
            continue
        upstream = [jobs[up.key] for up in run.upstream if up.key in jobs]
        if options.kind == "local":
            for job in upstream:
                job.result()  # raises if the upstream job failed
            upstream = []
        depends_on = [str(job.job_id) for job in upstream]
        executor.update_parameters(**job_parameters(run, depends_on, options))
        jobs[run.key] = executor.submit(run_one, run, None, print, keep_last)
        after = f" after {', '.join(depends_on)}" if depends_on else ""
        log(f"{run.method.name} seed {run.seed}: job {jobs[run.key].job_id}{after}")
    return jobs
