"""The CSV logger that keeps an interrupted fit's rows when the fit resumes."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from cloudxfer.loggers import ROWS_KEY, ResumableCSVLogger, rows_before
from cloudxfer.stages.base import TRAINING_KEY

ROWS = """epoch,step,train/loss,val/loss
0,0,2.5,
0,1,2.25,
0,1,,2.0
1,2,1.75,
1,3,1.5,
1,3,,1.25
2,4,1.0,
2,5,0.5,
"""


def _checkpoint(path: Path, epochs: int, step: int) -> Path:
    torch.save({"global_step": step, TRAINING_KEY: {"epochs": [{}] * epochs}}, path)
    return path


def test_rows_before_keeps_finished_epochs_and_the_steps_before_the_checkpoint(
    tmp_path: Path,
) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(ROWS)
    at_epoch_end = rows_before(metrics, _checkpoint(tmp_path / "a.ckpt", epochs=2, step=4))
    assert [(r["epoch"], r["step"]) for r in at_epoch_end] == [(0, 0), (0, 1), (0, 1), (1, 2),
                                                               (1, 3), (1, 3)]  # fmt: skip
    assert at_epoch_end[2] == {"epoch": 0, "step": 1, "val/loss": 2.0}  # empty cells dropped
    mid_epoch = rows_before(metrics, _checkpoint(tmp_path / "b.ckpt", epochs=2, step=5))
    assert len(mid_epoch) == 7 and mid_epoch[-1] == {"epoch": 2, "step": 4, "train/loss": 1.0}
    assert rows_before(tmp_path / "none.csv", tmp_path / "a.ckpt") == []


def test_carried_rows_are_written_ahead_of_the_new_ones(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(ROWS)
    carried = rows_before(tmp_path / "metrics.csv", _checkpoint(tmp_path / "a.ckpt", 2, 4))
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.carry(carried)
    logger.log_metrics({"train/loss": 1.0, "epoch": 2}, step=4)
    assert isinstance(logger.experiment, ExperimentWriter)
    logger.save()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines == ROWS.splitlines()[:8]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_carried_training_rows_and_new_validation_columns_make_one_union_header(
    tmp_path: Path,
) -> None:
    # The report: the killed process's rows hold the training columns only; the resumed fit's
    # validation metrics bring new ones. Lightning's writer raised "dict contains fields not in
    # fieldnames"; the file now holds every row under the union of the columns, sorted.
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.carry([{"epoch": 0, "step": 0, "train/loss": 2.5}, {"epoch": 0, "step": 1, "x": 1}])
    logger.log_metrics({"train/loss": 1.5, "epoch": 1}, step=2)
    logger.save()
    logger.log_metrics({"val/loss": 1.25, "val/oa": 0.5, "epoch": 1}, step=2)
    logger.save()
    logger.finalize("success")
    assert _lines(tmp_path / "metrics.csv") == [
        "epoch,step,train/loss,val/loss,val/oa,x",
        "0,0,2.5,,,",
        "0,1,,,,1",
        "1,2,1.5,,,",
        "1,2,,1.25,0.5,",
    ]
    assert logger.rows[-1] == {"val/loss": 1.25, "val/oa": 0.5, "epoch": 1, "step": 2}


def test_appended_saves_write_the_file_a_single_save_would(tmp_path: Path) -> None:
    rows = [{"epoch": e, "train/loss": 1.0 / (s + 1)} for e in range(2) for s in range(3)]
    one, many = (tmp_path / "one", tmp_path / "many")
    logger = ResumableCSVLogger(save_dir=str(one), name="", version="")
    for step, row in enumerate(rows):
        logger.log_metrics(row, step=step)
    logger.save()
    logger = ResumableCSVLogger(save_dir=str(many), name="", version="")
    for step, row in enumerate(rows):
        logger.log_metrics(row, step=step)
        logger.save()  # Lightning saves after every logged row: appends
    assert (many / "metrics.csv").read_bytes() == (one / "metrics.csv").read_bytes()


def test_the_checkpoint_s_rows_win_over_what_the_killed_process_left(tmp_path: Path) -> None:
    # metrics.csv as a killed process may leave it: fewer columns, a torn last row, rows logged
    # after the checkpoint. The checkpoint's own rows are what the resumed fit writes.
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss\n0,0,2.5\n0,1,2.25\n1,2,1.")
    rows = [{"epoch": 0, "step": 0, "train/loss": 2.5}, {"epoch": 0, "step": 1, "val/loss": 2.0}]
    checkpoint = tmp_path / "last.ckpt"
    torch.save({"global_step": 2, TRAINING_KEY: {"epochs": [{}]}, ROWS_KEY: rows}, checkpoint)
    assert rows_before(tmp_path / "metrics.csv", checkpoint) == rows
    assert rows_before(tmp_path / "gone.csv", checkpoint) == rows  # the file is not needed
    logger = ResumableCSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.carry(rows)
    assert isinstance(logger.experiment, ExperimentWriter)  # Lightning's deletes the old file
    logger.carry(rows)  # the CLI and the resume hook both carry: still once
    logger.log_metrics({"train/loss": 1.5, "epoch": 1}, step=2)
    logger.save()
    assert _lines(tmp_path / "metrics.csv") == [
        "epoch,step,train/loss,val/loss",
        "0,0,2.5,",
        "0,1,,2.0",
        "1,2,1.5,",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
