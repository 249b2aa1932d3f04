"""The unlabelled-pool figure (``cloudxfer plot pool``) from fake run folders of several sizes."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path

import pytest

from cloudxfer.reporting.curves import main as plot_main
from cloudxfer.reporting.pool import POOL_METHODS
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME, Setting, plan, profile_path

POOLED = ("aux_opt", "aux_sar", "target", "target_noirm")
BASE = {"source_finetune": 0.40, "aux_opt": 0.30, "aux_sar": 0.20, "target": 0.35,
        "target_noirm": 0.33}  # fmt: skip


@pytest.fixture(autouse=True)
def fixed_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """One code digest for every plan: a file edited between two sizes' plans changes none."""
    module = importlib.import_module("cloudxfer.runner.plan")  # the package re-exports plan()
    monkeypatch.setattr(module, "code_digest", lambda classes: "code")


def _pool_folder(root: Path, size: int, recorded: int | None = None, seeds=(0, 1)) -> Path:
    """Runs of one pool size as ``make fig-pool`` leaves them: records and test metrics.

    ``recorded``: the pool the distilled runs' fit commands give (default: ``size``). OA grows
    with the pool for every distilled method, by one point per seed.
    """
    folder = root / f"pool{size}"
    pool = size if recorded is None else recorded
    setting = Setting(
        profile=profile_path("smoke"),
        dataset="sen12ms_cloud",
        stage_overrides=tuple((m, f"--data.init_args.unlabelled_pool={pool}") for m in POOLED),
        run_root=lambda seed: folder / f"seed{seed}",
    )
    for run in plan(list(POOL_METHODS), list(seeds), setting):
        run.directory.mkdir(parents=True)
        (run.directory / RECORD_FILENAME).write_text(json.dumps(run.describe()))
        if not run.method.tested:
            continue
        gain = 0.0 if run.method.name == "source_finetune" else size / 100_000
        oa = BASE[run.method.name] + gain + 0.01 * run.seed
        (run.directory / METRICS).parent.mkdir()
        (run.directory / METRICS).write_text(json.dumps({"oa": oa, "n": 10}))
    return folder


def test_pool_figure_draws_oa_per_method_against_the_pool_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for size in (3000, 1000, 6000):
        _pool_folder(tmp_path, size)
    (tmp_path / "pool13000").mkdir()  # a size not started yet: listed, not drawn
    (tmp_path / "poolside").mkdir()  # not a size: ignored
    out = tmp_path / "fig" / "fig_pool.png"
    assert plot_main(["pool", str(tmp_path), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "pool 1000 (" in printed and "aux_opt seeds 0 1" in printed
    assert "pool 13000 (" in printed and "no tested run yet" in printed
    with out.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {"size", "method", "label", "seed", "oa", "oa_mean", "oa_std", "seeds"}
    assert len(rows) == 3 * 5 * 2  # sizes x methods x seeds
    target = [r for r in rows if r["method"] == "target"]
    assert [(int(r["size"]), int(r["seed"])) for r in target] == [
        (1000, 0), (1000, 1), (3000, 0), (3000, 1), (6000, 0), (6000, 1)
    ]  # fmt: skip
    assert [float(r["oa"]) for r in target] == pytest.approx([36.0, 37.0, 38.0, 39.0, 41.0, 42.0])
    assert [float(r["oa_mean"]) for r in target[::2]] == pytest.approx([36.5, 38.5, 41.5])
    assert float(target[0]["oa_std"]) == pytest.approx(0.71, abs=0.01)
    assert target[0]["seeds"] == "2" and target[0]["label"] == "F2 target, IRM (opt & SAR)"
    source = {float(r["oa_mean"]) for r in rows if r["method"] == "source_finetune"}
    assert source == {40.5}  # one f_S at every size


def test_pool_figure_refuses_runs_that_are_not_what_their_folder_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fig_pool.png"

    def refused(root: Path) -> str:
        with pytest.raises(SystemExit):
            plot_main(["pool", str(root), "--out", str(out)])
        return capsys.readouterr().err

    assert "no pool sizes (pool<N>/ folders) found" in refused(tmp_path)
    (tmp_path / "pool1000").mkdir()
    assert "no tested runs" in refused(tmp_path)
    wrong = tmp_path / "wrong"
    _pool_folder(wrong, 1000, recorded=3000)  # trained on another pool than its folder names
    assert "trained on unlabelled_pool=3000, not the pool of 1000" in refused(wrong)
    moved = tmp_path / "moved"
    _pool_folder(moved, 1000)
    folder = _pool_folder(moved, 3000)
    record_path = folder / "seed1" / "source_finetune" / RECORD_FILENAME
    record = json.loads(record_path.read_text())
    record["id"] = "another-fs"  # f_S of other code or settings at this size
    record_path.write_text(json.dumps(record))
    assert "f_S is run another-fs here" in refused(moved)
    record_path.unlink()
    scores = folder / "seed0" / "source_finetune" / METRICS
    scores.write_text(json.dumps({"oa": 0.41, "n": 10}))  # the same id, trained again
    assert "f_S scores differently here" in refused(moved)
    (folder / "seed1" / "source_finetune" / METRICS).unlink()
    scores.unlink()
    assert plot_main(["pool", str(moved), "--out", str(out)]) == 0  # the rest draws
