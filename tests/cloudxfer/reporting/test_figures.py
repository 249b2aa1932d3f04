"""Fig. 7 (OA on cloudy vs clear tiles per method) from a table's run folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cloudxfer.reporting.curves import main as plot_main
from cloudxfer.reporting.figures import find_tested_runs
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME, Setting, plan, profile_path


def _table_folder(
    tmp_path: Path, methods: tuple[str, ...] = ("target", "finetune_opt"), shift: float = 0.0
) -> Path:
    """Run records and test metrics as the runner leaves them, for two rows and two seeds."""
    setting = Setting(
        profile=profile_path("smoke"),
        dataset="sen12ms_cloud",
        run_root=lambda seed: tmp_path / f"seed{seed}",
    )
    for run in plan(list(methods), [0, 1], setting):
        run.directory.mkdir(parents=True)
        (run.directory / RECORD_FILENAME).write_text(json.dumps(run.describe()))
        if not run.method.tested:
            continue
        base = {"target": 0.6, "finetune_opt": 0.3}.get(run.method.name, 0.5) + shift
        metrics = {
            "oa": base, "oa_cloudy": base - 0.1 * (run.seed + 1), "oa_clear": base + 0.1,
            "n": 10, "n_cloudy": 4, "n_clear": 6,
        }  # fmt: skip
        (run.directory / METRICS).parent.mkdir()
        (run.directory / METRICS).write_text(json.dumps(metrics))
    return tmp_path


def test_fig7_bars_and_csv_hold_mean_and_std_per_method(tmp_path: Path) -> None:
    results = _table_folder(tmp_path / "table1")
    runs = find_tested_runs(results)
    # registry order, seeds in turn; the untested pre-training is left out
    names = ["source_finetune", "finetune_opt", "aux_opt", "aux_sar", "target"]
    assert [(r.name, r.parent.name) for r in runs] == [
        (name, f"seed{seed}") for name in names for seed in (0, 1)
    ]
    out = tmp_path / "fig7.png"
    assert plot_main(["cloudy-clear", str(results), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    with out.with_suffix(".csv").open() as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    target = rows["target"]
    assert target["seeds"] == "0 1" and target["label"] == "F2 target, IRM (opt & SAR)"
    assert float(target["oa_cloudy_mean"]) == pytest.approx(45.0)  # (50 + 40) / 2
    assert float(target["oa_cloudy_std"]) == pytest.approx(7.07, abs=0.01)
    assert float(target["oa_clear_mean"]) == pytest.approx(70.0)
    assert float(rows["finetune_opt"]["oa_clear_mean"]) == pytest.approx(40.0)


def test_fig7_refuses_a_folder_without_tested_runs(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        plot_main(["cloudy-clear", str(tmp_path), "--out", str(tmp_path / "f.png")])


def test_fig9_draws_oa_against_the_clouded_share_per_level(tmp_path: Path) -> None:
    for level, shift in ((10, 0.1), (50, 0.0), (100, -0.2)):
        _table_folder(tmp_path / f"cloud{level}", ("target", "target_noirm"), shift)
    (tmp_path / "cloudy").mkdir()  # not a level: ignored
    out = tmp_path / "fig9.png"
    assert plot_main(["cloud-sweep", str(tmp_path), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    with out.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    target = [(int(r["level"]), float(r["oa_mean"])) for r in rows if r["method"] == "target"]
    assert [level for level, _ in target] == [10, 50, 100]
    assert [oa for _, oa in target] == pytest.approx([70.0, 60.0, 40.0])
    assert {r["method"] for r in rows} == {"target", "target_noirm"}  # F1, f_S left out
    with pytest.raises(SystemExit):  # no level folders
        plot_main(["cloud-sweep", str(tmp_path / "cloudy"), "--out", str(out)])


def test_confusion_matrices_and_per_class_recall_from_predictions(tmp_path: Path) -> None:
    results = _table_folder(tmp_path / "table1", ("finetune_opt",))
    classes = ["a", "b", "c"]
    # seed 0: class a all right, b half right; seed 1: a half right, b all right; c absent
    predictions = {0: [(0, 0), (0, 0), (1, 1), (1, 0)], 1: [(0, 0), (0, 2), (1, 1), (1, 1)]}
    for run in find_tested_runs(results):
        metrics = json.loads((run / METRICS).read_text())
        (run / METRICS).write_text(json.dumps({**metrics, "class_names": classes}))
        seed = int(run.parent.name.removeprefix("seed"))
        lines = ["id,label,pred"] + [f"t{i},{t},{p}" for i, (t, p) in enumerate(predictions[seed])]
        (run / METRICS.parent / "predictions.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "figures"
    assert plot_main(["confusion", str(results), "--out", str(out)]) == 0
    assert (out / "confusion_finetune_opt.png").stat().st_size > 1000
    with (out / "recall.csv").open() as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    row = rows["finetune_opt"]
    assert row["seeds"] == "2"
    assert [float(row[c]) for c in classes] == pytest.approx([75.0, 75.0, 0.0])
