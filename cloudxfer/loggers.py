"""A CSV logger whose ``metrics.csv`` survives a resumed fit.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so a fit resumed
from ``last.ckpt`` would lose the loss curves of the epochs before the interruption. This
logger reads the rows logged up to the checkpoint before the writer starts and puts them back
in front of the resumed fit's rows: the file then reads as if the fit had never stopped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from cloudxfer.stages.base import TRAINING_KEY

__all__ = ["ResumableCSVLogger", "rows_before"]


def _number(value: str) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number


def rows_before(metrics_csv: Path, checkpoint: Path) -> list[dict[str, float | int]]:
    """Rows of ``metrics_csv`` logged before ``checkpoint`` was written (empty cells dropped).

    Epochs the checkpoint's training record holds are kept whole; of the epoch it stopped in
    (a step-wise checkpoint) the rows before its global step.
    """
    if not metrics_csv.is_file():
        return []
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    finished = len((state.get(TRAINING_KEY) or {}).get("epochs", []))
    step = int(state.get("global_step", 0))
    with metrics_csv.open(newline="") as file:
        rows = [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
    return [
        row
        for row in rows
        if int(row.get("epoch", 0)) < finished
        or (int(row.get("epoch", 0)) == finished and int(row.get("step", 0)) < step)
    ]


class ResumableCSVLogger(CSVLogger):
    """:class:`CSVLogger` that writes the rows of an interrupted fit (:meth:`carry`) first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._earlier: list[dict[str, float | int]] = []

    def carry(self, rows: list[dict[str, float | int]]) -> None:
        """Rows to write before the first new one (the interrupted fit's, :func:`rows_before`)."""
        self._earlier = list(rows)

    @property
    def experiment(self) -> Any:
        """The CSV writer, given the carried rows once, ahead of anything logged since."""
        writer = super().experiment
        if self._earlier and isinstance(writer, ExperimentWriter):
            # Lightning's writer deleted the old file when it started; its pending rows are
            # written (and its header built) at the next save.
            writer.metrics[:0] = self._earlier  # type: ignore[arg-type]
            self._earlier = []
        return writer
