"""The record a simulated data folder keeps of how it was made (``simulation.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cloudxfer.reporting.report import read_record

__all__ = ["SIMULATION_RECORD", "describe_simulation", "simulation_record"]

SIMULATION_RECORD = "simulation.json"
"""What a simulated target or source folder records about how it was made (its generator,
seed and sizes), so a later ``--synth`` asking for other data does not silently reuse it."""


def simulation_record(root: Path) -> dict[str, Any] | None:
    """Return the simulation record of a data folder, or None (not simulated, or unreadable)."""
    return read_record(root / SIMULATION_RECORD)


def describe_simulation(record: dict[str, Any]) -> str:
    """One phrase for a simulation record: ``simulated (source, role nwpu, ..., seed 0)``."""
    fields = ", ".join(f"{key} {record[key]}" for key in sorted(record) if key != "generator")
    return f"simulated ({record.get('generator', '?')}: {fields})"
