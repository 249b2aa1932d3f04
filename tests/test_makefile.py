"""The Makefile's table and figure targets: where each profile writes and what it simulates.

``make -n`` prints the commands without running them, so these checks cost nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(*args: str) -> str:
    result = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return " ".join(result.stdout.replace("\\\n", " ").split())


@pytest.mark.parametrize("target", ["table1", "table2", "table3", "table4"])
def test_each_profile_writes_its_own_results_folder(target: str) -> None:
    quick = _dry_run(target, "PROFILE=quick")
    assert f"--out results/{target} --share-dir results/shared" in quick
    assert "--pairs 3000 --per-class 700" in quick
    smoke = _dry_run(target, "PROFILE=smoke")
    # a smoke table next to a quick one never reuses or overwrites the quick runs or data
    assert f"--out results/smoke/{target} --share-dir results/smoke/shared" in smoke
    assert "--data-root results/smoke/data/sim0/" in smoke
    assert "--pairs 300 --per-class 8" in smoke
    paper = _dry_run(target, "PROFILE=paper")
    assert f"--out results/paper/{target}" in paper and "--pairs 3000" in paper
    chosen = _dry_run(target, "PROFILE=smoke", "RESULTS=/tmp/elsewhere")
    assert f"--out /tmp/elsewhere/{target}" in chosen


def test_fig9_runs_two_levels_on_smoke_and_ten_otherwise() -> None:
    assert "for L in 50 100;" in _dry_run("fig9", "PROFILE=smoke")
    assert "for L in 10 20 30 40 50 60 70 80 90 100;" in _dry_run("fig9", "PROFILE=quick")
    assert "for L in 30 70;" in _dry_run("fig9", "PROFILE=smoke", "LEVELS=30 70")
