"""``make fig-pool`` and the ``SIZE=paper`` switch, checked by ``make -n`` (nothing runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(*args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=check
    )
    return " ".join((result.stdout + result.stderr).replace("\\\n", " ").split())


def test_size_paper_simulates_the_papers_pairs_in_a_store_of_its_own() -> None:
    default = _dry_run("table1", "PROFILE=quick")
    assert "--pairs 3000 --per-class 700" in default
    assert "--out results/quick/table1 " in default
    paper = _dry_run("table1", "PROFILE=quick", "SIZE=paper")
    assert "--pairs 16219 --per-class 700" in paper
    assert "--out results/quick-paper/table1 " in paper
    assert "--data-root results/quick-paper/data/sim0/target" in paper
    # the source set and the shared source-domain runs do not depend on the target's size
    assert "--share-dir results/quick/shared" in paper
    assert "--source-root results/quick/data/sim0/source" in paper
    for table in ("table2", "table3", "table4"):
        assert "--pairs 16219" in _dry_run(table, "SIZE=paper")
    assert "--pairs 300 --per-class 8" in _dry_run("table1", "PROFILE=smoke", "SIZE=paper")
    assert "give SIZE=paper, or leave SIZE unset" in _dry_run("table1", "SIZE=big", check=False)


def test_fig_pool_trains_one_fs_and_each_pool_on_the_papers_pairs() -> None:
    text = _dry_run("fig-pool", "PROFILE=quick", "SEEDS=0,1")
    common = (
        "--profile quick --seeds 0 1 --share-dir results/quick/shared --synth --seed 0 "
        "--pairs 16219 --per-class 700 --data-root results/quick-paper/data/sim0/target "
        "--source-root results/quick/data/sim0/source"
    )
    reference = f"{common} --methods source_finetune --out results/quick-paper/fig_pool/reference"
    assert reference in text
    assert "for N in 1000 3000 6000 11497;" in text and "for S in 0 1;" in text
    # f_S is copied from the reference folder to every size, never trained there again
    assert "cp -R $ref $dst" in text
    assert "ref=results/quick-paper/fig_pool/reference/seed$S/source_finetune" in text
    run = (
        f"{common} --methods source_finetune aux_opt aux_sar target target_noirm "
        "--out results/quick-paper/fig_pool/pool$N"
    )
    assert run in text
    for stage in ("aux_opt", "aux_sar", "target", "target_noirm"):
        assert f"--stage.{stage}.data.init_args.unlabelled_pool=$N" in text
    assert "--stage.source_finetune" not in text
    assert "plot pool results/quick-paper/fig_pool --out results/fig_pool.png" in text
    assert "for N in 12 36;" in _dry_run("fig-pool", "PROFILE=smoke")
    assert "for N in 500 2000;" in _dry_run("fig-pool", "POOLS=500 2000")
