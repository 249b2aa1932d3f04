"""Shared machinery of every stage: optimiser, evaluation, output files and checkpoint metadata.

Stages differ only in how they build their model and compute their loss (``compute_loss``);
training and validation steps, the per-epoch training record (``training.json``, convergence on
held-out tiles, teacher diagnostics), evaluation (OA/AA/Kappa overall, cloudy and clear),
``metrics.json``/``predictions.csv`` and the metadata that links stages through checkpoints
live here once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Sequence
from functools import partial
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
from cloudxfer.models.initialise import (
    InitialisationError,
    encoders_of,
    load_encoder_state,
    read_encoder_state,
)
from cloudxfer.profile import Profile
from cloudxfer.runtime import images_to
from cloudxfer.teachers import TeacherLogits, compute_teacher_logits, load_or_compute
from datamodules.runfiles import write_json

__all__ = ["TRAINING_FILENAME", "TRAINING_KEY", "StageModule", "default_backbone", "gather_rows"]


def _cosine(total: int, step: int) -> float:
    """Cosine from 1 at step 0 to 0 at step ``total``."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def _inverse(total: int, step: int) -> float:
    """DSAN's (and DANN's) annealing (1 + 10 p) ** -0.75, p the share of the budget done."""
    return float((1.0 + 10.0 * min(step, total) / total) ** -0.75)


SCHEDULES: dict[str, Callable[[int, int], float]] = {"cosine": _cosine, "inverse": _inverse}
"""Per-step learning-rate factors over a budget of ``total`` optimiser steps."""

PAPER = Profile()
"""The paper's settings: what a stage built without a profile (in Python) falls back to."""


def default_backbone(backbone: str | None, network: Literal["source", "target"]) -> str:
    """Return ``backbone``, or the paper's network of that role where none was given.

    The training command gives every method the profile's network (``cloudxfer.profile``);
    only a stage built directly in Python meets the fallback.
    """
    return backbone if backbone is not None else getattr(PAPER, f"{network}_backbone")


Batch = dict[str, Any]
Scheduler = Literal["cosine", "inverse", "plateau", "none"]
Selection = Literal["last", "lowest_val"]
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
        lr_pretrained: learning rate of the parameters that start pre-trained (None: the
            paper profile's; heads and other new parameters train at ``lr``).
        scheduler: ``cosine`` (per step, to zero over the fit's budget: ``max_epochs`` of
            ``limit_train_batches``), ``inverse`` (DSAN's lr / (1 + 10 p) ** 0.75 over the
            budget), ``plateau`` (x0.1 after ``patience // 2`` epochs without a lower held-out
            loss; the only schedule early stopping may end) or ``none``.
        selection: the epoch the fit hands on (``best.ckpt``): ``last`` (of the completed
            schedule, the paper's) or ``lowest_val`` (lowest held-out loss; a sensitivity).
        init: where the trained network's encoders start: None or ``scratch`` (random), or a
            checkpoint of a single-encoder classifier of the same architecture (the source
            pre-training) or a weights file (:mod:`cloudxfer.models.initialise`).
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
        lr_pretrained: float | None = None,
        scheduler: Scheduler = "cosine",
        selection: Selection | None = None,
        init: str | None = None,
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
            "lr_pretrained": PAPER.lr_pretrained if lr_pretrained is None else lr_pretrained,
            "scheduler": scheduler,
        }
        self.selection: Selection = PAPER.selection if selection is None else selection
        if init == "source":
            raise ValueError(
                "init 'source' names the protocol, not a file: the training command gives "
                "the source pre-training's checkpoint (or pass its path)"
            )
        self.init = None if init in (None, "scratch") else init
        self.initialisation = "scratch"
        """Where the trained network started (``training.json``): set when weights load."""
        self.pretrained: set[str] = set()
        """Parameter names that start pre-trained (trained at ``lr_pretrained``)."""
        self.has_pretrained = False
        """Whether the fit started any parameter pre-trained (kept in checkpoints)."""
        self.budget_epochs: int | None = None
        """The fit's epoch budget (``max_epochs``; kept in checkpoints for ``test``)."""
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
        # Learning rate of the last optimiser step and its peak (the schedule's start)
        self._step_lr = float("nan")
        self._peak_lr = 0.0
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

    def pseudo_label_diagnostics(self, logits: dict[str, Tensor], labels: Tensor) -> dict[str, Any]:
        """Extra figures about the teachers' outputs over the training tiles (e.g. kept share).

        ``labels``: the data set's labels of those tiles (-1: unknown), for diagnostics only.
        """
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

    def setup(self, stage: str) -> None:
        """Start the trained network's encoders from ``init`` before a fit (once).

        Subclasses that load teachers extend it (calling this first). Done before Lightning
        restores a resumed fit's checkpoint, whose weights then replace these; a refused file
        stops the fit before its run folder is touched (the CLI calls ``setup`` early).
        """
        if stage != "fit" or self.init is None or self.initialisation != "scratch":
            return
        state, backbone = read_encoder_state(self.init)
        ours = str(getattr(self.model, "spec", {}).get("backbone", ""))
        if backbone and ours and backbone != ours:
            raise InitialisationError(
                f"{self.init}: initial weights of a {backbone!r}, this network is a {ours!r} "
                "(pre-train this architecture on the source set: method student_pretrain)"
            )
        for prefix, encoder, inputs in encoders_of(self.model):
            names = load_encoder_state(encoder, state, inputs, self.init)
            self.mark_pretrained(f"model.{prefix}", names)
        self.initialisation = str(self.init)

    def mark_pretrained(self, prefix: str, names: Collection[str]) -> None:
        """Record parameters (``prefix.name``) as pre-trained: they train at ``lr_pretrained``."""
        self.pretrained.update(f"{prefix}.{name}" for name in names)
        self.has_pretrained = bool(self.pretrained)

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
        self.budget_epochs = self.trainer.max_epochs
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
        record.update(self.pseudo_label_diagnostics(rows, torch.tensor(labels)))
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
        if self._step_lr == self._step_lr:  # an optimiser step ran (not NaN)
            entry["lr"] = round(self._step_lr, 8)
            entry["peak_lr"] = round(self._peak_lr, 8)
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
        protocol = self.protocol_record()
        return {
            "stage": self.stage_name,
            "protocol": protocol,
            "epochs": self.history,
            "final_train_loss": self.history[-1]["train"].get("loss") if self.history else None,
            "convergence": convergence(curve, (protocol.get("handed_on") or {}).get("lr_share")),
            "diagnostics": self.diagnostics,
        }

    def protocol_record(self) -> dict[str, Any]:
        """How the fit was run and what it hands on: initialisation, schedule, selection.

        The handed-on epoch is the last one (``last``) or the one of the lowest held-out
        loss (``lowest_val``); its learning rate is that of its last optimiser step, as a
        share of the peak; schedule progress is the epochs trained up to it over the budget.
        """
        budget = self.budget_epochs
        record: dict[str, Any] = {
            "initialisation": self.initialisation,
            "schedule": self.optim["scheduler"],
            "selection": self.selection,
            "budget_epochs": budget,
            "lr": self.optim["lr"],
            "lr_pretrained": self.optim["lr_pretrained"] if self.has_pretrained else None,
        }
        epochs = self.history
        if self.selection == "lowest_val":
            scored = [e for e in epochs if "loss" in e.get("val", {})]
            epochs = [min(scored, key=lambda e: e["val"]["loss"])] if scored else epochs
        if epochs:
            chosen = epochs[-1]
            lr, peak = chosen.get("lr"), chosen.get("peak_lr")
            record["handed_on"] = {
                "epoch": chosen["epoch"],
                "lr": lr,
                "lr_share": round(lr / peak, 6) if lr is not None and peak else None,
                "schedule_progress": round((chosen["epoch"] + 1) / budget, 6) if budget else None,
            }
        return record

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
    def param_groups(self) -> list[dict[str, Any]]:
        """Return parameter groups: pre-trained parameters at ``lr_pretrained``, others at ``lr``.

        A stage with its own groups (DSAN's bottleneck and head) overrides it; a group's
        ``lr`` is its peak, which the schedule scales.
        """
        hp = self.optim
        trainable = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        pretrained = [p for n, p in trainable if n in self.pretrained]
        fresh = [p for n, p in trainable if n not in self.pretrained]
        groups = [{"params": fresh, "lr": hp["lr"]}] if fresh else []
        if pretrained:
            groups.append({"params": pretrained, "lr": hp["lr_pretrained"]})
        return groups

    def configure_optimizers(self) -> Any:
        """SGD or AdamW over :meth:`param_groups`, with a schedule that ends with the budget.

        ``cosine`` and ``inverse`` step every optimiser step over the fit's whole budget
        (Lightning's ``estimated_stepping_batches``: ``max_epochs`` times the batches an
        epoch trains), so the last step of the last epoch is the end of the schedule;
        ``plateau`` follows the held-out loss, epoch by epoch.
        """
        hp = self.optim
        groups = self.param_groups()
        optimizer: torch.optim.Optimizer
        if hp["optimizer"] == "sgd":
            optimizer = torch.optim.SGD(
                groups, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
            )
        else:
            optimizer = torch.optim.AdamW(groups, lr=hp["lr"], weight_decay=hp["weight_decay"])
        kind = hp["scheduler"]
        if kind == "none":
            return optimizer
        if kind == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=0.1, patience=max(1, self._stop_patience() // 2)
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": plateau, "monitor": "val/loss", "interval": "epoch"},
            }
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(SCHEDULES[kind], total))
        stepwise = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": stepwise}

    def _stop_patience(self) -> int:
        """Early stopping's patience (the plateau schedule decays at half of it)."""
        stopper = self.trainer.early_stopping_callback
        return int(stopper.patience) if stopper is not None else CONVERGENCE_PATIENCE

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Keep the learning rate of this step (first group's), for the epoch's record."""
        first = optimizer.param_groups[0]
        self._step_lr = float(first["lr"])
        self._peak_lr = max(self._peak_lr, float(first.get("initial_lr", 0.0)), self._step_lr)

    # --- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the stage metadata that later stages validate."""
        checkpoint[METADATA_KEY] = self.stage_metadata()
        checkpoint[TRAINING_KEY] = {
            "epochs": self.history,
            "diagnostics": self.diagnostics,
            "patience": self.patience,
            "initialisation": self.initialisation,
            "has_pretrained": self.has_pretrained,
            "budget_epochs": self.budget_epochs,
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
        self._peak_lr = max((float(e.get("peak_lr", 0.0)) for e in self.history), default=0.0)
        self.diagnostics = dict(record.get("diagnostics", {}))
        self.patience = int(record.get("patience", CONVERGENCE_PATIENCE))
        self.initialisation = str(record.get("initialisation", self.initialisation))
        self.has_pretrained = bool(record.get("has_pretrained", self.has_pretrained))
        self.budget_epochs = record.get("budget_epochs", self.budget_epochs)
        states = checkpoint.get(RANDOM_STATE_KEY)
        if states:
            torch.set_rng_state(states["torch"])
            if states["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
            name, keys, position, has_gauss, cached = states["numpy"]
            np.random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, cached))
            random.setstate(states["python"])
