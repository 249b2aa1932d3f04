"""The protocol in the plan: each student's pre-training is an upstream run, init in its id."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudxfer.runner import Setting, plan
from cloudxfer.runner.plan import profile_path
from cloudxfer.stages.base import SCHEDULES


def _setting(tmp_path: Path, *overrides: str) -> Setting:
    return Setting(
        profile=profile_path("smoke"),
        dataset="sen12ms_cloud",
        overrides=(
            f"--profile.data_root={tmp_path / 'data'}",
            f"--profile.source_root={tmp_path / 'source'}",
            *overrides,
        ),
        run_root=lambda seed: tmp_path / f"seed{seed}",
    )


def _runs(tmp_path: Path, *overrides: str) -> dict[str, tuple[str, list[str], str]]:
    """Method -> (run id, upstream methods, its fit command) of a plan of two students."""
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "source").mkdir(exist_ok=True)
    runs = plan(["aux_opt", "target_scratch"], [0], _setting(tmp_path, *overrides))
    return {
        r.method.name: (r.run_id, [u.method.name for u in r.upstream], r.shell("fit")) for r in runs
    }


def test_a_student_starts_from_the_pre_training_of_its_own_architecture(tmp_path: Path) -> None:
    same = _runs(tmp_path)
    run_id, upstream, command = same["aux_opt"]
    assert upstream == ["source_finetune", "source_pretrain"]
    checkpoint = tmp_path / "seed0" / "source_pretrain" / "checkpoints" / "best.ckpt"
    assert f"--model.init_args.init={checkpoint}" in command
    assert "student_pretrain" not in same
    other = _runs(tmp_path, "--profile.target_backbone=resnet18")
    assert other["aux_opt"][1] == ["source_finetune", "student_pretrain"]
    assert "student_pretrain" in other and other["aux_opt"][0] != run_id
    # the ablation sets its own init: no pre-training upstream, whatever the profile says
    assert same["aux_opt_scratch"][1] == ["source_finetune"]


def test_init_enters_the_ids_of_the_runs_that_read_it_only(tmp_path: Path) -> None:
    source = _runs(tmp_path)
    scratch = _runs(tmp_path, "--profile.init=scratch")
    assert scratch["aux_opt"][1] == ["source_finetune"]
    assert scratch["aux_opt"][0] != source["aux_opt"][0]
    for unchanged in ("source_pretrain", "source_finetune", "aux_opt_scratch", "target_scratch"):
        assert scratch[unchanged][0] == source[unchanged][0], unchanged


def test_schedules_end_with_the_budget() -> None:
    assert SCHEDULES["cosine"](100, 0) == 1.0
    assert SCHEDULES["cosine"](100, 100) == pytest.approx(0.0)
    assert SCHEDULES["cosine"](100, 99) < 0.001  # the last step runs at almost nothing
    assert SCHEDULES["inverse"](100, 0) == 1.0
    assert SCHEDULES["inverse"](100, 100) == pytest.approx(11**-0.75)  # DSAN's end: 0.166
