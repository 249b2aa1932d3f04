"""The datamodules' constructors must parse with jsonargparse (what LightningCLI uses)."""

import torch
from jsonargparse import ArgumentParser

from datamodules import CloudyPairsDataModule, Sen12msCloudDataModule, SourceScenesDataModule
from datamodules.clouds import CloudConfig
from datamodules.normalisation import Standardisation

STANDARDISATION = {
    "opt_mean": [0.1, 0.1, 0.1],
    "opt_std": [0.2, 0.2, 0.2],
    "sar_mean": [0.5, 0.5, 0.5],
    "sar_std": [0.1, 0.1, 0.1],
}


def test_sen12ms_parses_from_config(sen12ms_dataset):
    parser = ArgumentParser()
    parser.add_class_arguments(Sen12msCloudDataModule, "data")
    cfg = parser.parse_object(
        {
            "data": {
                "root": str(sen12ms_dataset.root),
                "classes": sen12ms_dataset.classes,
                "standardisation": STANDARDISATION,
                "clouds": {"cloudy_share": 0.3, "seed": 2},
                "train_subset": "labelled",
                "num_workers": 2,
                "batch_size": 16,
            }
        }
    )
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm.standardisation, Standardisation)
    assert isinstance(dm.clouds, CloudConfig) and dm.clouds.cloudy_share == 0.3
    assert dm.num_classes == 3
    seen = 0
    for batch in dm.train_dataloader():  # worker processes
        assert batch["image_opt"].dtype == torch.float32
        seen += batch["label"].shape[0]
    assert seen == 54  # 20 labelled per class, 2 per class held out for validation


def test_cloudy_pairs_and_source_parse():
    for cls in (CloudyPairsDataModule, SourceScenesDataModule):
        parser = ArgumentParser()
        parser.add_class_arguments(cls, "data")
        # the loader settings are the profile's: left unset here, filled by the training command
        defaults = parser.get_defaults().data
        assert defaults.batch_size is None and defaults.num_workers is None
