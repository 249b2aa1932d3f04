"""Lightning callbacks the CLI always adds: run files next to the logs, and prediction CSVs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from cloudxfer.metrics import write_predictions_csv
from cloudxfer.stages.base import gather_rows

__all__ = ["PredictionCSVWriter", "RunFiles"]


def _log_dir(trainer: pl.Trainer) -> Path:
    """Return the run's log dir. ``Trainer.log_dir`` broadcasts: every rank must call this."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class RunFiles(pl.Callback):
    """Write the datamodule's split (``split.csv``) and ``normalisation.json`` into the log dir.

    So every run can be reproduced and inspected: which tiles were labelled, unlabelled and
    test, and which scaling constants the model saw.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write the files; Lightning sets the datamodule up before callbacks (rank 0 only)."""
        log_dir = _log_dir(trainer)
        datamodule = getattr(trainer, "datamodule", None)
        writer = getattr(datamodule, "write_run_files", None)
        if writer is not None and trainer.is_global_zero:
            writer(log_dir)


class PredictionCSVWriter(BasePredictionWriter):
    """Write ``predictions.csv`` (one row per tile, all ranks gathered) after ``predict``."""

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        """Flatten the per-batch rows, gather them across ranks, and write them on rank 0."""
        rows: list[dict[str, Any]] = []
        for batch_rows in predictions:
            if isinstance(batch_rows, list) and batch_rows and isinstance(batch_rows[0], list):
                for inner in batch_rows:  # several predict dataloaders
                    rows.extend(inner)
            else:
                rows.extend(batch_rows)
        rows = gather_rows(rows)
        log_dir = _log_dir(trainer)
        if trainer.is_global_zero:
            write_predictions_csv(log_dir / self.filename, rows)
