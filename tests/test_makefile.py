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
def test_each_profile_keeps_its_runs_and_the_table_lands_in_results(target: str) -> None:
    publish = (
        f"mkdir -p results/{target} && cp results/{{profile}}/{target}/table.csv "
        f"results/{{profile}}/{target}/table.md results/{target}/"
    )
    quick = _dry_run(target, "PROFILE=quick")
    assert f"--out results/quick/{target} --share-dir results/quick/shared" in quick
    assert "--data-root results/quick/data/sim0/" in quick
    assert "--pairs 3000 --per-class 700" in quick
    assert publish.format(profile="quick") in quick
    smoke = _dry_run(target, "PROFILE=smoke")
    # a smoke table next to a quick one never reuses or overwrites the quick runs or data
    assert f"--out results/smoke/{target} --share-dir results/smoke/shared" in smoke
    assert "--data-root results/smoke/data/sim0/" in smoke
    assert "--pairs 300 --per-class 8" in smoke
    assert publish.format(profile="smoke") in smoke
    paper = _dry_run(target, "PROFILE=paper")
    assert f"--out results/paper/{target}" in paper and "--pairs 3000" in paper
    own = _dry_run(target, "PROFILE=/tmp/mine/long.yaml")
    assert "--profile /tmp/mine/long.yaml" in own and f"--out results/long/{target}" in own
    chosen = _dry_run(target, "PROFILE=smoke", "RESULTS=/tmp/elsewhere")
    assert f"--out /tmp/elsewhere/smoke/{target}" in chosen
    assert f"results/{target}/" not in chosen


@pytest.mark.parametrize("target", ["table1", "table2", "table3", "table4"])
def test_a_prepared_data_file_and_a_source_folder_replace_the_simulated_ones(target: str) -> None:
    real = _dry_run(target, "PROFILE=smoke", "DATASET=mine/sen12ms.yaml", "SOURCE=mine/NWPU")
    assert f"--dataset {REPO_ROOT / 'mine' / 'sen12ms.yaml'}" in real
    assert f"--source-root {REPO_ROOT / 'mine' / 'NWPU'}" in real
    assert "--data-root" not in real and "sim0/source" not in real
    assert real.count("--dataset ") == 1


def test_figures_read_the_profiles_runs_and_write_to_results() -> None:
    fig7 = _dry_run("fig7", "PROFILE=smoke")
    assert "plot cloudy-clear results/smoke/table1 --out results/fig7.png" in fig7
    assert "plot confusion results/smoke/table1 --out results/table1/confusion" in fig7
    fig8 = _dry_run("fig8", "PROFILE=smoke", "SEEDS=2,0")
    assert "plot losses results/smoke/table1/seed2/target results/smoke/table1/seed2/" in fig8
    fig9 = _dry_run("fig9", "PROFILE=smoke")
    assert "--out results/smoke/fig9/cloud$L" in fig9
    assert "plot cloud-sweep results/smoke/fig9 --out results/fig9.png" in fig9


def test_fig9_runs_two_levels_on_smoke_and_ten_otherwise() -> None:
    assert "for L in 50 100;" in _dry_run("fig9", "PROFILE=smoke")
    assert "for L in 10 20 30 40 50 60 70 80 90 100;" in _dry_run("fig9", "PROFILE=quick")
    assert "for L in 30 70;" in _dry_run("fig9", "PROFILE=smoke", "LEVELS=30 70")
