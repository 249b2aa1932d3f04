"""What the benchmark scripts share: the default data config, simulated data, fake teachers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml

from cloudxfer.stages import AuxiliaryDistillation, SourceClassification
from cloudxfer.stages.base import StageModule
from datamodules import Sen12msCloudDataModule, Standardisation
from datamodules.clouds import CloudConfig

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
DATA_YAML = EXPERIMENTS / "data" / "sen12ms_cloud.yaml"


def profile(name: str) -> dict[str, Any]:
    """The ``profile`` block of an experiment profile YAML."""
    return dict(yaml.safe_load((EXPERIMENTS / "profiles" / f"{name}.yaml").read_text())["profile"])


def data_settings() -> dict[str, Any]:
    """Classes and standardisation of the default target data config."""
    init = yaml.safe_load(DATA_YAML.read_text())["init_args"]
    return {"classes": list(init["classes"]), "standardisation": dict(init["standardisation"])}


def target_datamodule(
    root: Path, store: bool, store_dir: Path, **kwargs: Any
) -> Sen12msCloudDataModule:
    """The default target datamodule (clouds as in the data-set file, seed 0) on ``root``."""
    settings = data_settings()
    return Sen12msCloudDataModule(
        root=str(root),
        classes=settings["classes"],
        standardisation=Standardisation.from_dict(settings["standardisation"]),
        clouds=CloudConfig(cloudy_share=0.5, coverage=0.5, thin_share=0.5, seed=0),
        store=store,
        store_dir=str(store_dir),
        **kwargs,
    )


def _save(module: StageModule, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "cloudxfer": module.stage_metadata()}, path)
    return path


def fake_teachers(
    out: Path, classes: list[str], target_backbone: str, source_backbone: str
) -> dict[str, Path]:
    """Randomly initialised teacher checkpoints (F1 opt/SAR, f_S) that F2 accepts."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    files = {}
    for modality in ("opt", "sar"):
        aux = AuxiliaryDistillation(
            teacher="unused", modality=modality, backbone=target_backbone, class_names=classes
        )
        files[modality] = _save(aux, out / f"aux_{modality}.ckpt")
    source = SourceClassification(
        mode="finetune", backbone=source_backbone, init_from="unused", class_names=classes
    )
    files["source"] = _save(source, out / "source_finetune.ckpt")
    return files


class StepTimer(pl.Callback):
    """Wall time from the first timed batch's start to the last batch's end."""

    def __init__(self, skip: int) -> None:
        self.skip = skip
        self.start = 0.0
        self.end = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.skip:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.end = time.perf_counter()
