"""Datamodules: files on disk -> validated, scaled sample dicts for the stages."""

from datamodules.clouds import DEFAULT_CLOUDS, NO_CLOUDS, CloudConfig, CloudPaster
from datamodules.cloudy_pairs import CloudyPairsDataModule
from datamodules.errors import DataError
from datamodules.normalisation import Standardisation, channel_mean_std, compute_standardisation
from datamodules.sen12ms_cloud import Sen12msCloudDataModule, Sen12msCloudDataset
from datamodules.source_scenes import SourceScenesDataModule, SourceScenesDataset
from datamodules.splits import SplitRow, make_split, read_split_csv, write_split_csv

__all__ = [
    "DEFAULT_CLOUDS",
    "NO_CLOUDS",
    "CloudConfig",
    "CloudPaster",
    "CloudyPairsDataModule",
    "DataError",
    "Sen12msCloudDataModule",
    "Sen12msCloudDataset",
    "SourceScenesDataModule",
    "SourceScenesDataset",
    "SplitRow",
    "Standardisation",
    "channel_mean_std",
    "compute_standardisation",
    "make_split",
    "read_split_csv",
    "write_split_csv",
]
