"""Shared machinery of every stage: optimiser, evaluation, output files and checkpoint metadata.

Stages differ only in how they build their model and compute their loss (``compute_loss``);
training and validation steps, the per-epoch training record (``training.json``, convergence on
held-out tiles, teacher diagnostics), evaluation (OA/AA/Kappa overall, cloudy and clear),
``metrics.json``/``predictions.csv`` and the metadata that links stages through checkpoints
live here once.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from cloudxfer.checkpoints import FORMAT_VERSION, METADATA_KEY, CheckpointError, validate_metadata
from cloudxfer.checkpoints import load_frozen_model as _load_frozen
from cloudxfer.diagnostics import (
    CONVERGENCE_PATIENCE,
    TRAINING_FILENAME,
    EpochMeans,
    convergence,
    teacher_diagnostics,
)
from cloudxfer.metrics import SceneMetrics, write_metrics_json, write_predictions_csv
from cloudxfer.models import modality_of
from cloudxfer.profile import Profile
from cloudxfer.runtime import images_to
from cloudxfer.teachers import TeacherLogits, compute_teacher_logits, load_or_compute
from datamodules.runfiles import write_json

__all__ = ["TRAINING_FILENAME", "TRAINING_KEY", "StageModule", "default_backbone", "gather_rows"]

PAPER = Profile()
"""The paper's settings: what a stage built without a profile (in Python) falls back to."""


def default_backbone(backbone: str | None, network: Literal["source", "target"]) -> str:
    """Return ``backbone``, or the paper's network of that role where none was given.

    The training command gives every method the profile's network (``cloudxfer.profile``);
    only a stage built directly in Python meets the fallback.
    """
    return backbone if backbone is not None else getattr(PAPER, f"{network}_backbone")


Batch = dict[str, Any]
RANDOM_STATE_KEY = "cloudxfer_random_state"
"""Checkpoint key of the random states of training (restored when a fit resumes)."""
TRAINING_KEY = "cloudxfer_training"
"""Checkpoint key of the training record (epochs, diagnostics) that ``test`` reports."""


def _numpy_state() -> list[Any]:
    """Return NumPy's global random state as plain Python values (for weights-only loads)."""
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    return [str(name), [int(k) for k in keys], int(position), int(has_gauss), float(cached)]


def gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collect per-tile rows from every DDP rank (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[list[dict[str, Any]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        return [row for part in parts for row in (part or [])]
    return rows


class StageModule(pl.LightningModule):
    """Base LightningModule of a stage; subclasses set ``self.model`` and ``compute_loss``.

    Args:
        class_names: output class names (linked from the datamodule by the CLI).
        normalisation: the datamodule's scaling/standardisation constants, saved with the run.
        optimizer: ``sgd`` (paper: momentum 0.9, weight decay 5e-4) or ``adamw``.
        lr: learning rate (None: the paper's 1e-2; the training command gives the profile's).
        momentum: SGD momentum (None: the paper's 0.9).
        weight_decay: weight decay (None: the paper's "decay factor 5e-4").
        scheduler: ``cosine`` annealing over ``max_epochs`` or ``none``.
        cloudy_threshold: a test tile is cloudy when its cloud fraction exceeds this.
        teacher_cache: compute frozen teachers' logits over the training tiles once at fit
            start and look them up in the training step (needs un-augmented training tiles and
            a datamodule with ``sample_key``; otherwise teachers run on every batch).
        channels_last: channels-last memory format for models and image batches (faster
            convolutions on CPU and on GPUs with tensor cores).
        compile_model: ``torch.compile`` the trained model's forward (GPU runs; the weights and
            checkpoints are those of the plain model).
        method: registry name of a comparison method built on this stage class (e.g.
            ``finetune_opt``, ``kd_s``), recorded in checkpoints so they never serve as a
            teacher of the chain; None for the chain's own stages.

    """

    stage_name: str = ""

    def __init__(
        self,
        class_names: list[str] | None = None,
        normalisation: dict[str, Any] | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float | None = None,
        momentum: float | None = None,
        weight_decay: float | None = None,
        scheduler: Literal["none", "cosine"] = "cosine",
        cloudy_threshold: float = 0.0,
        teacher_cache: bool = True,
        channels_last: bool | None = None,
        compile_model: bool | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__()
        self.method = method
        if not class_names:
            raise ValueError(
                f"{type(self).__name__} needs class_names (the CLI links them from the datamodule)"
            )
        self.class_names = list(class_names)
        # Kept here, not read back from hparams: a subclass's save_hyperparameters() records only
        # the arguments it was given, so base-class defaults would be missing there.
        self.optim: dict[str, Any] = {
            "optimizer": optimizer,
            "lr": PAPER.lr if lr is None else lr,
            "momentum": PAPER.momentum if momentum is None else momentum,
            "weight_decay": PAPER.weight_decay if weight_decay is None else weight_decay,
            "scheduler": scheduler,
        }
        self.normalisation = dict(normalisation or {})
        self.model: nn.Module
        self.val_metrics = SceneMetrics(len(self.class_names), cloudy_threshold)
        self.test_metrics = SceneMetrics(len(self.class_names), cloudy_threshold)
        self._test_rows: list[dict[str, Any]] = []
        self.teacher_cache = teacher_cache
        self.channels_last = bool(channels_last)
        self.compile_model = bool(compile_model)
        # Frozen teachers stay out of the module tree: they are not trained and not checkpointed.
        self._teachers: dict[str, nn.Module] = {}
        self._teacher_files: dict[str, str] = {}
        self._teacher_logits: TeacherLogits | None = None
        self._compiled: dict[str, nn.Module] = {}  # outside the tree: state_dict keys unchanged
        # Training record: one entry per epoch (train means of every logged figure, held-out
        # loss) and, for distillation stages, the teachers' pseudo-label quality.
        self.history: list[dict[str, Any]] = []
        self.diagnostics: dict[str, Any] = {}
        self._train_means = EpochMeans()
        self._val_means = EpochMeans()
        self._val_record: dict[str, float] = {}
        # Convergence patience: the fit's early stopping's when it has one (kept in checkpoints
        # so a test run judges the curve as its fit did).
        self.patience = CONVERGENCE_PATIENCE

    # --- subclasses -------------------------------------------------------------------------
    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        raise NotImplementedError

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the stage's objective on a batch, and the figures to log about it.

        Used for training and, on the tiles held out from the stage's training set, for
        validation, so the held-out curve measures exactly what the stage optimises.
        """
        raise NotImplementedError

    def pseudo_label_diagnostics(self, logits: dict[str, Tensor]) -> dict[str, Any]:
        """Extra figures about the teachers' outputs over the training tiles (e.g. kept share)."""
        return {}

    def extra_test_metrics(self) -> dict[str, float]:
        """Scores beside OA/AA/Kappa that a stage adds to ``metrics.json`` (e.g. PSNR, SSIM).

        Called once at the end of a test epoch on every rank (torchmetrics states sync);
        NaN is written as null.
        """
        return {}

    @property
    def inputs(self) -> list[str]:
        """Sample keys the stage's model reads."""
        return list(getattr(self.model, "inputs", []))

    def stage_metadata(self) -> dict[str, Any]:
        """Metadata saved in checkpoints; subclasses may add fields."""
        return {
            "format": FORMAT_VERSION,
            "stage": self.stage_name,
            "method": self.method,
            "modality": modality_of(self.inputs),
            "inputs": self.inputs,
            "class_names": self.class_names,
            "normalisation": self.normalisation,
            "model": dict(getattr(self.model, "spec", {})),
        }

    def add_teacher(
        self,
        name: str,
        path: str | None,
        stages: Collection[str],
        modality: str | None = None,
        class_names: Sequence[str] | None = None,
        methods: Collection[str] | None = None,
    ) -> None:
        """Load a frozen teacher checked against this run's classes (by default) and modality.

        Raises:
            CheckpointError: no checkpoint was given (``path`` None), or it does not fit.

        """
        if path is None:
            raise CheckpointError(
                f"{type(self).__name__}: the {name} teacher's checkpoint is not set (the "
                "training command takes it from the method card's `needs` under the profile's "
                "run_root; give it as a --model.init_args option)"
            )
        names = self.class_names if class_names is None else class_names
        model, _ = _load_frozen(path, stages, names, modality, methods)
        self._teachers[name] = model.to(self.device)
        self._teacher_files[name] = path

    @property
    def memory_format(self) -> torch.memory_format:
        """Memory format of models and image batches."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def configure_model(self) -> None:
        """Channels-last weights and the optional compiled forward (before optimisers exist)."""
        self.model.to(memory_format=self.memory_format)
        if self.compile_model and "model" not in self._compiled:
            self._compiled["model"] = cast(nn.Module, torch.compile(self.model))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Image tensors in the configured memory format."""
        if self.channels_last and isinstance(batch, dict):
            if all(isinstance(part, dict) for part in batch.values()):  # a CombinedLoader's
                return {
                    name: images_to(part, memory_format=torch.channels_last)
                    for name, part in batch.items()
                }
            return images_to(batch, memory_format=torch.channels_last)
        return batch

    def on_fit_start(self) -> None:
        """Take early stopping's patience; move frozen teachers and run them once if possible."""
        stopper = self.trainer.early_stopping_callback
        if stopper is not None:
            self.patience = int(stopper.patience)
        for name, model in self._teachers.items():
            self._teachers[name] = model.to(self.device).to(memory_format=self.memory_format)
        self._teacher_logits = None
        if not self._teachers:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        cached = self.teacher_cache and not getattr(datamodule, "augment", False)
        logits = self._fit_teacher_logits(cached)
        if logits is None:
            return
        self._teacher_logits = logits if cached else None
        if not self.diagnostics:  # a resumed fit keeps the record of its first start
            self.diagnostics = self._teacher_diagnostics(logits)

    def _fit_teacher_logits(self, cached: bool) -> TeacherLogits | None:
        """Teachers' logits over the stage's training tiles, once.

        ``cached``: also over the held-out tiles, kept on disk and looked up by the training
        and validation steps. Otherwise (teachers run live, e.g. on augmented tiles) only
        over the training tiles, for the diagnostics, and nothing is saved. Under DDP every
        rank computes (or reads) the logits of all tiles, since the distributed sampler hands
        each rank other tiles every epoch. None for a datamodule without ``sample_key``.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        sample_key = getattr(datamodule, "sample_key", None)
        if sample_key is None:
            return None
        store_dir = getattr(datamodule, "store_dir", None)
        cache_dir = Path(store_dir) / "teacher_logits" if store_dir is not None and cached else None
        parts = []
        for subset in ("fit", "val") if cached else ("fit",):
            dataset = datamodule.subset_dataset(subset)  # type: ignore[union-attr]
            if len(dataset) == 0:
                continue
            parts.append(
                load_or_compute(
                    cache_dir,
                    self._teacher_files,
                    sample_key(subset),
                    lambda dataset=dataset: compute_teacher_logits(
                        self._teachers, dataset, self.device, channels_last=self.channels_last
                    ),
                )
            )
        return TeacherLogits.concat(parts)

    def _teacher_diagnostics(self, logits: TeacherLogits) -> dict[str, Any]:
        """Pseudo-label quality on the training tiles (``fit``), against the data set's labels."""
        dataset = self.trainer.datamodule.subset_dataset("fit")  # type: ignore[attr-defined]
        ids, labels, fractions = [], [], []
        for index in range(len(dataset)):
            sample = dataset[index]
            ids.append(sample["id"])
            labels.append(int(sample["label"]))
            fractions.append(float(sample["cloud_fraction"]))
        rows = logits.lookup(ids, "cpu")
        threshold = float(self.val_metrics.cloudy_threshold)
        record = teacher_diagnostics(rows, torch.tensor(labels), torch.tensor(fractions), threshold)
        record.update(self.pseudo_label_diagnostics(rows))
        return record

    def teacher_outputs(self, batch: Batch) -> dict[str, Tensor]:
        """Each frozen teacher's logits for the batch: cached by tile id, or computed now."""
        if self._teacher_logits is not None:
            return self._teacher_logits.lookup(batch["id"], self.device)
        with torch.no_grad():
            return {name: teacher(batch) for name, teacher in self._teachers.items()}

    # --- forward / evaluation ---------------------------------------------------------------
    def forward(self, batch: Batch) -> Tensor:
        """Class logits of the stage's model."""
        return self._compiled.get("model", self.model)(batch)

    def _evaluate(self, batch: Batch, metrics: SceneMetrics) -> tuple[Tensor, Tensor]:
        logits = self(batch)
        preds = logits.argmax(dim=1)
        fraction = batch.get("cloud_fraction")
        if fraction is None:
            fraction = torch.full_like(preds, float("nan"), dtype=torch.float32)
        metrics.update(preds, batch["label"], fraction.float())
        return logits, preds

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Return the stage's loss; log every figure of ``compute_loss``, average it per epoch."""
        loss, logs = self.compute_loss(batch)
        self.record_training_step(loss, logs, self.batch_size_of(batch))
        return loss

    def record_training_step(self, loss: Tensor, logs: dict[str, Tensor], n: int) -> None:
        """Log a training step's figures and add them to the epoch means (weight ``n``).

        Stages with their own training step (manual optimisation: CycIT's CycleGAN) call it
        too, so their epochs enter ``training.json`` like every other stage's.
        """
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=n)
        self._train_means.add({"loss": loss.detach(), **logs}, n)

    def batch_size_of(self, batch: Batch) -> int:
        """Return the samples in a training batch (its weight in the epoch means)."""
        return len(batch["id"])

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Score the stage's own loss on held-out training tiles (OA only as a diagnostic)."""
        loss, _ = self.compute_loss(batch)
        n = len(batch["id"])
        self.log("val/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self._val_means.add({"loss": loss}, n)
        if bool((batch["label"] >= 0).all()):
            self._evaluate(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/oa``, ``val/aa``, ``val/kappa`` (diagnostics) and keep the held-out loss.

        A stage that classifies nothing on its held-out tiles (a restoration network) keeps
        its loss alone.
        """
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        means = self._val_means.compute(self._sum_over_ranks)
        if self.trainer.sanity_checking:
            return
        if not values["n"]:
            self._val_record = dict(means)
            return
        self.log_dict(
            {f"val/{k}": v for k, v in values.items() if not k.startswith("n")}, sync_dist=False
        )
        self._val_record = {**means, **{k: float(values[k]) for k in ("oa", "aa", "kappa")}}

    def on_train_epoch_end(self) -> None:
        """Append this epoch's train means and held-out figures to the training record."""
        entry: dict[str, Any] = {
            "epoch": self.current_epoch,
            "train": {
                k: round(v, 6) for k, v in self._train_means.compute(self._sum_over_ranks).items()
            },
        }
        if self._val_record:
            entry["val"] = {k: round(v, 6) for k, v in self._val_record.items()}
        self._val_record = {}
        self.history = [e for e in self.history if e["epoch"] != self.current_epoch] + [entry]

    def on_fit_end(self) -> None:
        """Write ``training.json`` (epochs, convergence, diagnostics) to the log dir."""
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # all ranks: broadcasts
        if self.trainer.is_global_zero:
            write_json(out / TRAINING_FILENAME, self.training_record())

    def training_record(self) -> dict[str, Any]:
        """Return the training record: epochs, convergence of the held-out loss, diagnostics."""
        curve = [e["val"]["loss"] for e in self.history if "loss" in e.get("val", {})]
        return {
            "stage": self.stage_name,
            "epochs": self.history,
            "final_train_loss": self.history[-1]["train"].get("loss") if self.history else None,
            "convergence": convergence(curve, self.patience),
            "diagnostics": self.diagnostics,
        }

    def _sum_over_ranks(self, value: Tensor) -> Tensor:
        """Sum a CPU tensor over DDP ranks (identity on one process)."""
        if self.trainer.world_size <= 1:
            return value
        reduced = self.trainer.strategy.reduce(value.to(self.device), reduce_op="sum")
        return cast(Tensor, reduced).cpu()

    def rows(self, batch: Batch, logits: Tensor) -> list[dict[str, Any]]:
        """One output row per tile (see :data:`cloudxfer.metrics.PREDICTION_COLUMNS`)."""
        probs = torch.softmax(logits.float(), dim=1)
        confidence, preds = probs.max(dim=1)
        labels = batch.get("label")
        fractions = batch.get("cloud_fraction")
        out = []
        for i, tile_id in enumerate(batch["id"]):
            label = int(labels[i]) if labels is not None else -1
            out.append(
                {
                    "id": tile_id,
                    "label": label,
                    "pred": int(preds[i]),
                    "label_name": self.class_names[label] if label >= 0 else "",
                    "pred_name": self.class_names[int(preds[i])],
                    "confidence": round(float(confidence[i]), 6),
                    "cloud_fraction": (
                        round(float(fractions[i]), 6) if fractions is not None else float("nan")
                    ),
                }
            )
        return out

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Accumulate test metrics and per-tile rows."""
        logits, _ = self._evaluate(batch, self.test_metrics)
        self._test_rows.extend(self.rows(batch, logits))

    def on_test_epoch_start(self) -> None:
        """Start a fresh list of per-tile rows."""
        self._test_rows = []

    def on_test_epoch_end(self) -> None:
        """Log test metrics and write ``metrics.json`` and ``predictions.csv`` to the log dir."""
        values = {**self.test_metrics.compute(), **self.extra_test_metrics()}
        self.test_metrics.reset()
        self.log_dict({f"test/{k}": v for k, v in values.items()}, sync_dist=False)
        rows = gather_rows(self._test_rows)
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # broadcasts: all ranks
        if self.trainer.is_global_zero:
            write_metrics_json(
                out / "metrics.json",
                values,
                stage=self.stage_name,
                modality=modality_of(self.inputs),
                class_names=self.class_names,
                training=self.training_record(),
            )
            write_predictions_csv(out / "predictions.csv", rows)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """Per-tile prediction rows (written by the CLI's prediction writer)."""
        return self.rows(batch, self(batch))

    # --- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """SGD or AdamW over trainable parameters, optionally cosine-annealed per epoch."""
        params = [p for p in self.parameters() if p.requires_grad]
        hp = self.optim
        optimizer: torch.optim.Optimizer
        if hp["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp["scheduler"] == "none":
            return optimizer
        epochs = max(1, int(self.trainer.max_epochs or 1))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # --- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the stage metadata that later stages validate."""
        checkpoint[METADATA_KEY] = self.stage_metadata()
        checkpoint[TRAINING_KEY] = {
            "epochs": self.history,
            "diagnostics": self.diagnostics,
            "patience": self.patience,
        }
        # Random states at this point of training (Lightning keeps none): a resumed fit then
        # draws what the uninterrupted one drew (augmentation, dropout, noise).
        checkpoint[RANDOM_STATE_KEY] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # plain lists and tuples: checkpoints stay loadable with weights_only
            "numpy": _numpy_state(),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint from another stage, class scheme or modality."""
        meta = checkpoint.get(METADATA_KEY)
        if not isinstance(meta, dict):
            raise CheckpointError("checkpoint carries no cloudxfer stage metadata")
        validate_metadata(
            meta,
            "checkpoint",
            stages={self.stage_name},
            class_names=self.class_names,
            modality=modality_of(self.inputs),
        )
        record = checkpoint.get(TRAINING_KEY) or {}
        self.history = list(record.get("epochs", []))
        self.diagnostics = dict(record.get("diagnostics", {}))
        self.patience = int(record.get("patience", CONVERGENCE_PATIENCE))
        states = checkpoint.get(RANDOM_STATE_KEY)
        if states:
            torch.set_rng_state(states["torch"])
            if states["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
            name, keys, position, has_gauss, cached = states["numpy"]
            np.random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, cached))
            random.setstate(states["python"])
