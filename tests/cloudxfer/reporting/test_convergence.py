"""Convergence curves (``cloudxfer plot convergence``) from the stages' training records."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cloudxfer.diagnostics import TRAINING_FILENAME, convergence
from cloudxfer.reporting.convergence import read_curve
from cloudxfer.reporting.curves import main as plot_main


def _stage(root: Path, name: str, train: list[float], val: list[float | None]) -> Path:
    """A stage folder holding the training record a fit writes (loss per epoch, verdict)."""
    folder = root / name
    folder.mkdir(parents=True)
    epochs = [
        {"epoch": i, "train": {"loss": t}, "val": {} if v is None else {"loss": v, "oa": 0.5}}
        for i, (t, v) in enumerate(zip(train, val, strict=True))
    ]
    held_out = [v for v in val if v is not None]
    record = {
        "stage": name,
        "epochs": epochs,
        "final_train_loss": train[-1],
        "convergence": convergence(held_out, lr_share=0.0),
    }
    (folder / TRAINING_FILENAME).write_text(json.dumps(record))
    return folder


def test_curves_and_csv_follow_each_stage_record(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # held-out lowest at the 2nd epoch, flat since (annealed): converged
    _stage(runs, "aux_opt", [2.0, 1.5, 1.0, 0.5, 0.4, 0.3], [2.2, 1.8, 1.8, 1.8, 1.81, 1.8])
    # held-out still falling at the last epoch: not converged
    _stage(runs, "aux_sar", [2.0, 1.9, 1.8], [2.1, 2.0, 1.7])
    (runs / "notes").mkdir()  # not a stage folder: skipped
    out = tmp_path / "fig" / "convergence.png"
    assert plot_main(["convergence", str(runs), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    with out.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["stage"], r["epoch"]) for r in rows] == [
        ("aux_opt", "1"), ("aux_opt", "2"), ("aux_opt", "3"), ("aux_opt", "4"),
        ("aux_opt", "5"), ("aux_opt", "6"),
        ("aux_sar", "1"), ("aux_sar", "2"), ("aux_sar", "3"),
    ]  # fmt: skip
    opt = [r for r in rows if r["stage"] == "aux_opt"]
    assert [float(r["val_loss"]) for r in opt] == [2.2, 1.8, 1.8, 1.8, 1.81, 1.8]
    assert [float(r["train_loss"]) for r in opt] == [2.0, 1.5, 1.0, 0.5, 0.4, 0.3]
    assert {(r["best_epoch"], r["converged"]) for r in opt} == {("2", "yes")}
    sar = [r for r in rows if r["stage"] == "aux_sar"]
    assert {(r["best_epoch"], r["converged"]) for r in sar} == {("3", "no")}


def test_a_stage_without_held_out_tiles_has_no_best_epoch(tmp_path: Path) -> None:
    stage = _stage(tmp_path, "source_pretrain", [1.0, 0.8], [None, None])
    curve = read_curve(stage)
    assert curve.val == [None, None] and curve.best_epoch is None and curve.converged is False
    out = tmp_path / "one.png"
    assert plot_main(["convergence", str(stage), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [(r["val_loss"], r["best_epoch"], r["converged"]) for r in rows] == [("", "", "no")] * 2


def test_a_folder_without_training_records_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        plot_main(["convergence", str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'empty'}: no fitted stage folder (training.json)" in error
    # a record with no epochs names its file
    stage = tmp_path / "broken"
    stage.mkdir()
    (stage / TRAINING_FILENAME).write_text(json.dumps({"stage": "x", "epochs": []}))
    with pytest.raises(ValueError, match=f"{stage / TRAINING_FILENAME}: no training record"):
        read_curve(stage)
    assert not (tmp_path / "x.png").exists()
