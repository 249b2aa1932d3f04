"""Baseline DSAN: deep subdomain adaptation from labelled optical tiles to an unlabelled stream.

Zhu et al. (TNNLS 2020), as the authors' code runs it (docs/baselines.md, "DSAN"): a backbone
started by the protocol's ``init``, a 256-d linear bottleneck and a linear head; cross-entropy
on a labelled source batch plus ``lmmd_weight * lambda(p) * LMMD`` between the source and
target batches' bottleneck features (``lambda(p) = 2 / (1 + exp(-10 p)) - 1``, LMMD over the
classes both in the source labels and the target's predictions); SGD with the backbone at the
profile's ``lr_pretrained`` and bottleneck and head at ``lr`` (10x), annealed by ``inverse``.

The labelled source is the optical image of the 20 labelled target tiles per class (the only
optical samples labelled in the target classes); the target is the target train split's SAR
image (the Table rows) or, for the known-shift check, its thin-cloud optical image with the
labelled tiles' clear twins as the source. Both streams pass through one encoder, but the
network's batch-norm running statistics follow the target stream alone
(:mod:`cloudxfer.stream_statistics`), so what it is scored on is normalised with its own
statistics.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, cast

import torch
from torch import Tensor

from cloudxfer.lmmd import lmmd, lmmd_over_ranks, lmmd_ramp, shared_classes
from cloudxfer.losses import label_loss
from cloudxfer.models import BottleneckClassifier, modality_of
from cloudxfer.stages.base import Batch, StageModule, default_backbone
from cloudxfer.stream_statistics import StreamStatistics

__all__ = ["BnStatistics", "SubdomainAdaptation"]

BnStatistics = Literal["target", "shared"]
"""Which batches the network's batch-norm running statistics follow: ``target`` (the source
stream's are kept apart) or ``shared`` (both streams, as the authors' code does)."""
OPTICAL_INPUTS = frozenset({"image_opt", "image_opt_clear"})
"""Input keys holding R, G, B images (the clear twin too): their stem is the RGB one."""


class SubdomainAdaptation(StageModule):
    """DSAN: cross-entropy on a labelled optical stream + ramped LMMD to a target stream.

    Trains on the datamodule's paired streams (its card's ``streams: [labelled]``): ``labelled``
    (source images and labels) and ``target`` (target images, no label read). A plain batch
    (the held-out tiles) is split the same way by its ``labelled`` flag.

    Args:
        backbone: torchvision model name (the profile's source network).
        source_input: sample key of the labelled source images (``image_opt``, or
            ``image_opt_clear`` for the known-shift check).
        target_input: sample key of the target images, which the network is scored on.
        bottleneck_width: width of the linear bottleneck before the head (DSAN: 256).
        bottleneck_relu: a ReLU after the bottleneck (the authors' code has none).
        lmmd_weight: weight of LMMD at the end of DSAN's ramp ``2 / (1 + exp(-10 p)) - 1``
            over training progress ``p`` (steps of the whole budget); 0: no alignment.
        kernel_mul: ratio between the Gaussian kernels' bandwidths.
        kernel_num: number of Gaussian kernels.
        bn_statistics: ``target``: the network's batch-norm running statistics follow the
            target batches only (the source batches update a set of their own), so the
            scored stream is normalised with its own statistics; ``shared``: both streams
            update them. With ``lmmd_weight`` 0 and ``shared`` the target stream is not read.
        target_label_weight: weight of cross-entropy on the labelled tiles' target images
            (0: the unsupervised DSAN, no target label read).
        **kwargs: see :class:`~cloudxfer.stages.base.StageModule`.

    """

    stage_name = "dsan"

    def __init__(
        self,
        backbone: str | None = None,
        source_input: str = "image_opt",
        target_input: str = "image_sar",
        bottleneck_width: int = 256,
        bottleneck_relu: bool = False,
        lmmd_weight: float = 0.5,
        kernel_mul: float = 2.0,
        kernel_num: int = 5,
        bn_statistics: BnStatistics = "target",
        target_label_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        backbone = default_backbone(backbone, "source")
        for name, weight in (
            ("lmmd_weight", lmmd_weight),
            ("target_label_weight", target_label_weight),
        ):
            if weight < 0:
                raise ValueError(f"SubdomainAdaptation: {name} must be >= 0, got {weight}")
        if bn_statistics not in ("target", "shared"):
            raise ValueError(f"SubdomainAdaptation: unknown bn_statistics {bn_statistics!r}")
        if source_input == target_input:
            raise ValueError(f"SubdomainAdaptation: source and target both read {source_input}")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        stem = ["image_opt"] if source_input in OPTICAL_INPUTS else [source_input]
        self.model = BottleneckClassifier(
            backbone,
            [target_input],
            len(self.class_names),
            width=bottleneck_width,
            relu=bottleneck_relu,
            stem_inputs=stem,
        )
        self.source_statistics: StreamStatistics | None = (
            StreamStatistics(self.model) if bn_statistics == "target" else None
        )
        self._statistics_started = False

    @classmethod
    def expected_metadata(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """(stage, modality) a checkpoint of this class built from ``init_args`` records."""
        return cls.stage_name, modality_of([str(init_args.get("target_input", "image_sar"))])

    @property
    def network(self) -> BottleneckClassifier:
        """The trained network (typed)."""
        return cast(BottleneckClassifier, self.model)

    def setup(self, stage: str) -> None:
        """Start the network from ``init``, then the source stream's statistics from its own.

        A resumed fit's checkpoint replaces both afterwards (Lightning restores it later).
        """
        super().setup(stage)
        if stage == "fit" and self.source_statistics is not None and not self._statistics_started:
            self.source_statistics.copy_from(self.model)
            self._statistics_started = True

    # --- optimisation -----------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """DSAN's groups: bottleneck and head at ``lr``, the backbone at ``lr_pretrained``.

        The backbone takes ``lr_pretrained`` when it started pre-trained (the protocol's
        ``init``; the authors' 1e-3 against 1e-2), else ``lr`` like every new parameter.
        """
        hp = self.optim
        net = self.network
        encoder_names = {f"model.encoder.{name}" for name, _ in net.encoder.named_parameters()}
        backbone_lr = hp["lr_pretrained"] if encoder_names & self.pretrained else hp["lr"]
        parts = (("bottleneck", net.bottleneck, hp["lr"]), ("head", net.head, hp["lr"]))
        groups = [
            {"name": name, "params": [p for p in part.parameters() if p.requires_grad], "lr": lr}
            for name, part, lr in (*parts, ("backbone", net.encoder, backbone_lr))
        ]
        grouped = sum(len(group["params"]) for group in groups)
        trainable = sum(1 for p in self.parameters() if p.requires_grad)
        if grouped != trainable:
            raise RuntimeError(f"DSAN: {trainable - grouped} trainable parameters in no group")
        return [group for group in groups if group["params"]]

    # --- data -------------------------------------------------------------------------------
    def batch_size_of(self, batch: Batch) -> int:
        """Return the target tiles of the step (the labelled stream cycles beside them)."""
        return len(batch["target"]["id"]) if "target" in batch else len(batch["id"])

    def _streams(self, batch: Batch) -> tuple[Batch, Tensor]:
        """Split a step's batch into the labelled tiles' fields and the target images."""
        target_key = str(self.hparams["target_input"])
        if "target" in batch:
            return batch["labelled"], batch["target"][target_key]
        labelled = batch["labelled"].bool()
        fields = (str(self.hparams["source_input"]), target_key, "label")
        return {key: batch[key][labelled] for key in fields}, batch[target_key]

    def _source_stream(self) -> AbstractContextManager[None]:
        """Return the batch-norm statistics the source images pass through (own or shared)."""
        if self.source_statistics is None:
            return nullcontext()
        return self.source_statistics.active(self.model)

    # --- loss -------------------------------------------------------------------------------
    def progress(self) -> float:
        """Training progress in [0, 1] (global step over the fit's planned steps), for the ramp."""
        try:
            total = self.trainer.estimated_stepping_batches
        except RuntimeError:  # not attached to a trainer: the ramp's end
            return 1.0
        return float(self.global_step) / max(float(total), 1.0) if total != float("inf") else 1.0

    def lmmd_weight_now(self) -> float:
        """LMMD's weight: DSAN's ramp in training; the ramp's end for held-out tiles.

        Held-out tiles are scored with one fixed objective (the one training ends on), so the
        held-out curve does not rise with the ramp alone.
        """
        progress = self.progress() if self.training else 1.0
        return float(self.hparams["lmmd_weight"]) * lmmd_ramp(progress)

    def compute_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy on the labelled source images + ramped LMMD to the target images.

        With ``target_label_weight > 0``, plus that weight times cross-entropy on the
        labelled tiles' target images.
        """
        net = self.network
        hp = self.hparams
        labelled, target_images = self._streams(batch)
        labels = labelled["label"]
        adapt = float(hp["lmmd_weight"]) > 0
        target_features: Tensor | None = None
        if adapt:
            target_features = net.embed(target_images)
        elif self.source_statistics is not None and self.training:
            with torch.no_grad():  # the target batch only updates its batch-norm statistics
                net.embed(target_images)
        target_weight = float(hp["target_label_weight"])
        if len(labels) == 0:  # a held-out batch without labelled tiles: nothing to score
            zero = torch.zeros((), device=target_images.device)
            logs = {"loss/supervised": zero}
            if adapt:
                logs["loss/lmmd"] = zero
            if target_weight > 0:
                logs["loss/supervised_target"] = zero
            return zero, logs
        with self._source_stream():
            source_features = net.embed(labelled[str(hp["source_input"])])
        supervised, accuracy = label_loss(net.head(source_features), labels)
        loss = supervised
        logs = {"loss/supervised": supervised.detach(), "train/acc": accuracy}
        if target_features is not None:
            probabilities = torch.softmax(net.head(target_features), dim=1).float()
            # Training aligns the global batch of all DDP processes (equal batch sizes there); a
            # held-out batch's labelled share differs per process, so it is scored locally.
            align = lmmd_over_ranks if self.training else lmmd
            alignment = align(
                source_features.float(),
                target_features.float(),
                labels,
                probabilities,
                float(hp["kernel_mul"]),
                int(hp["kernel_num"]),
            )
            weight = self.lmmd_weight_now()
            loss = loss + weight * alignment
            classes = shared_classes(labels, probabilities.detach())
            logs["loss/lmmd"] = alignment.detach()
            logs["lmmd/weight"] = torch.tensor(weight)
            logs["lmmd/classes"] = torch.tensor(float(classes.numel()))
        if target_weight > 0:
            target_logits = net.head(net.embed(labelled[str(hp["target_input"])]))
            supervised_target, accuracy_target = label_loss(target_logits, labels)
            loss = loss + target_weight * supervised_target
            logs["loss/supervised_target"] = supervised_target.detach()
            logs["train/acc_target"] = accuracy_target
        return loss, logs
