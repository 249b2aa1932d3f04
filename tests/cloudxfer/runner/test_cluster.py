"""Cluster submission through submitit: job settings, dependencies, re-submission."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloudxfer.runner import Setting, plan
from cloudxfer.runner.cli import main as run_main
from cloudxfer.runner.cluster import ClusterOptions, job_parameters, submit
from cloudxfer.runner.plan import profile_path
from cloudxfer.sim import generate_source, generate_target


def _runs(tmp_path: Path) -> list[Any]:
    setting = Setting(
        profile=profile_path("smoke"),
        dataset="sen12ms_cloud",
        run_root=lambda seed: tmp_path / f"seed{seed}",
    )
    return plan(["target"], [0, 1], setting)


class _Recorder:
    """Stands in for submitit's AutoExecutor: records each job's parameters, returns ids."""

    submitted: list[dict[str, Any]] = []

    def __init__(self, folder: Path, cluster: str) -> None:
        self.cluster = cluster
        self.params: dict[str, Any] = {}

    def update_parameters(self, **params: Any) -> None:
        self.params = params

    def submit(self, fn: Any, *args: Any) -> Any:
        job_id = str(100 + len(self.submitted))
        self.submitted.append({"id": job_id, "cluster": self.cluster, **self.params})
        return type("Job", (), {"job_id": job_id})()


def test_slurm_jobs_carry_partition_gpus_and_afterok_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import submitit

    _Recorder.submitted = []
    monkeypatch.setattr(submitit, "AutoExecutor", _Recorder)
    runs = _runs(tmp_path)
    options = ClusterOptions("slurm", tmp_path / "jobs", partition="gpu", account="lab", gpus=2)
    jobs = submit(runs, options, log=lambda _: None)
    assert len(jobs) == len(runs) == 1 + 2 * 4  # f_pre once; f_S, F1 x2, F2 per seed
    by_name = {(j["name"]): j for j in _Recorder.submitted}
    assert all(j["cluster"] == "slurm" and j["slurm_partition"] == "gpu" for j in by_name.values())
    assert all(j["gpus_per_node"] == 2 and j["slurm_account"] == "lab" for j in by_name.values())
    ids = {name: job["id"] for name, job in by_name.items()}
    # each job waits for exactly its upstream runs' jobs
    assert "slurm_dependency" not in by_name["source_pretrain-seed0"]
    assert by_name["source_finetune-seed1"]["slurm_dependency"] == (
        f"afterok:{ids['source_pretrain-seed0']}"
    )
    target = by_name["target-seed1"]["slurm_dependency"]
    assert target == "afterok:" + ":".join(
        [*(ids[f"{name}-seed1"] for name in ("aux_opt", "aux_sar", "source_finetune")),
         ids["source_pretrain-seed0"]]  # the pre-training its network starts from
    )  # fmt: skip
    # the parameters are the documented ones, nothing more
    params = job_parameters(runs[-1], ["7"], ClusterOptions("local", tmp_path))
    assert params == {"name": runs[-1].method.name + "-seed1", "timeout_min": 240}


@pytest.mark.slow
def test_a_smoke_plan_runs_through_submitit_local_jobs_and_is_not_resubmitted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, source = tmp_path / "data" / "target", tmp_path / "data" / "source"
    generate_target(data, pairs=300, seed=1)
    generate_source(source, per_class=4, seed=1, size=64)
    args = [
        "--out", str(tmp_path / "out"), "--profile", "smoke", "--methods", "source_finetune",
        "--data-root", str(data), "--source-root", str(source), "--executor", "submitit-local",
    ]  # fmt: skip
    assert run_main(args) == 0
    out = capsys.readouterr().out
    assert "source_pretrain seed 0: job" in out and "source_finetune seed 0: job" in out
    assert (tmp_path / "out" / "table.md").is_file()
    assert len(list((tmp_path / "out" / "jobs").glob("*_result.pkl"))) == 2
    # submitted again: nothing is pending, nothing runs, the same table is written
    table = (tmp_path / "out" / "table.csv").read_text()
    assert run_main(args) == 0
    again = capsys.readouterr().out
    assert "finished, not submitted" in again and ": job " not in again
    assert (tmp_path / "out" / "table.csv").read_text() == table
