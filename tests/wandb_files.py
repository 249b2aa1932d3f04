"""Read an offline W&B run from its files, as written on disk (no W&B server).

An offline run keeps everything it logged in its ``run-<id>.wandb`` transaction log; recent
wandb versions (wandb-core) write no ``files/config.yaml`` or ``wandb-metadata.json`` while
offline. wandb's own command ``wandb leet inspect PATH --json`` (``--help`` documents it)
prints the log's records, one JSON object a line: the ``run`` record (name, group, job type,
tags, config), ``history`` rows, ``summary`` updates. Media logged by the run (W&B tables)
are plain JSON files under ``files/media/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

__all__ = ["history", "offline_runs", "records", "run_record"]


def offline_runs(folder: Path) -> list[Path]:
    """The offline W&B run folders under ``folder/wandb`` (oldest first)."""
    return sorted((folder / "wandb").glob("offline-run-*"))


def records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of the run's ``.wandb`` log, through ``wandb leet inspect --json``.

    Skips the calling test where the installed wandb has no ``leet inspect`` (before 0.2x).
    """
    command = [sys.executable, "-m", "wandb", "leet", "inspect", str(run_dir), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "No such command" in result.stderr:
        pytest.skip("this wandb cannot read an offline run's log (no `wandb leet inspect`)")
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def run_record(log: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's own record: name, group, job type, tags and its first config update."""
    (run,) = [record["run"] for record in log if record.get("type") == "run"]
    return dict(run)


def history(log: list[dict[str, Any]], key: str) -> list[float]:
    """The values of ``key`` in the run's history rows, in the order they were logged."""
    rows = [record["history"]["item"] for record in log if record.get("type") == "history"]
    return [float(row[key]) for row in rows if key in row]
