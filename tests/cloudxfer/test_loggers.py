"""The CSV logger that keeps an interrupted fit's rows when the fit resumes."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from cloudxfer.loggers import ResumableCSVLogger, rows_before
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
