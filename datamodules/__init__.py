"""Datamodules: files on disk -> validated, scaled sample dicts for the stages.

Names are imported on first use (PEP 562): reading a run file (``datamodules.runfiles``) or a
data error class does not load torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_CLOUDS": "clouds",
    "NO_CLOUDS": "clouds",
    "CloudConfig": "clouds",
    "CloudPaster": "clouds",
    "CloudyPairsDataModule": "cloudy_pairs",
    "DataError": "errors",
    "Sen12msCloudDataModule": "sen12ms_cloud",
    "Sen12msCloudDataset": "sen12ms_cloud",
    "SourceScenesDataModule": "source_scenes",
    "SourceScenesDataset": "source_scenes",
    "SplitRow": "splits",
    "Standardisation": "normalisation",
    "channel_mean_std": "normalisation",
    "compute_standardisation": "normalisation",
    "make_split": "splits",
    "read_split_csv": "splits",
    "write_split_csv": "splits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` when it is first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
    return getattr(importlib.import_module(f"datamodules.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
