"""Window classification with checkpoint models and the missing/clouded-optical fallback.

Each model is applied with the normalisation its checkpoint records.

Policies (``FallbackPolicy.kind``), applied to a window whose unusable optical share (cloud
mask or optical nodata) exceeds ``threshold``:

- ``none``: the target model classifies every window as it is;
- ``sar_auxiliary``: the F1 SAR auxiliary's prediction replaces the target model's;
- ``cloud_optical``: the optical window becomes a full thick cloud (what a fully clouded
  tile looks like in training; zeros would lie outside the training distribution).

In every policy, optical nodata pixels of a window that is still classified are filled with
that same thick-cloud radiance before standardisation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from cloudxfer.checkpoints import CheckpointError, load_frozen_model
from cloudxfer.mapping.options import DEFAULT_FALLBACK_THRESHOLD, FALLBACKS
from datamodules.clouds import DEFAULT_CLOUDS, CloudConfig, cloud_layer
from datamodules.normalisation import (
    S2_RGB_BANDS,
    SAR_NAN_FILL_DB,
    SAR_NEGINF_FILL_DB,
    SAR_POSINF_FILL_DB,
    Standardisation,
    sar_channels,
    scale_s2,
)

__all__ = [
    "FALLBACKS",
    "FallbackPolicy",
    "MapModel",
    "WindowClassifier",
    "WindowPredictions",
    "full_cloud",
]

FallbackKind = Literal["none", "sar_auxiliary", "cloud_optical"]
TARGET_STAGES = frozenset({"target"})
CLOUD_FILL_SEED = 0
"""Seed of the one thick-cloud window (brightness, texture) used to fill missing optical."""


@dataclass(frozen=True)
class FallbackPolicy:
    """What the map does where a window's optical image is missing or fully clouded.

    Attributes:
        kind: ``none``, ``sar_auxiliary`` or ``cloud_optical`` (module docstring).
        threshold: Unusable share (cloud or optical nodata) above which the policy applies.
        sar_ckpt: The F1 SAR auxiliary checkpoint (``sar_auxiliary`` only).

    """

    kind: FallbackKind = "none"
    threshold: float = DEFAULT_FALLBACK_THRESHOLD
    sar_ckpt: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.kind!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"fallback threshold must lie in [0, 1), got {self.threshold}")
        if self.kind == "sar_auxiliary" and not self.sar_ckpt:
            raise ValueError("fallback sar_auxiliary needs the F1 SAR auxiliary's checkpoint")


@dataclass
class MapModel:
    """A frozen classifier rebuilt from a checkpoint with the checkpoint's normalisation."""

    model: nn.Module
    meta: dict[str, Any]
    path: Path

    @classmethod
    def load(
        cls,
        path: str | Path,
        stages: frozenset[str],
        modality: str,
        class_names: list[str] | None = None,
    ) -> MapModel:
        """Load and validate a checkpoint (stage, modality, classes), naming it on error."""
        model, meta = load_frozen_model(path, stages, class_names, modality)
        if not (meta.get("normalisation") or {}).get("standardisation"):
            raise CheckpointError(f"{path}: checkpoint records no normalisation to map with")
        return cls(model, meta, Path(path))

    @property
    def class_names(self) -> list[str]:
        """Class names in output order."""
        return list(self.meta["class_names"])

    @property
    def standardisation(self) -> Standardisation:
        """The per-channel standardisation the model was trained with."""
        return Standardisation.from_dict(self.meta["normalisation"]["standardisation"])

    @property
    def opt_bands(self) -> tuple[int, ...]:
        """1-based optical bands the model reads as R, G, B."""
        optical = self.meta["normalisation"].get("optical") or {}
        return tuple(int(b) for b in optical.get("bands_1based", S2_RGB_BANDS))

    @property
    def clouds(self) -> CloudConfig:
        """The pasted-cloud settings of its training data (defaults when none were recorded)."""
        stored = self.meta["normalisation"].get("clouds")
        if not isinstance(stored, dict):
            return DEFAULT_CLOUDS
        names = {f.name for f in fields(CloudConfig)}
        return CloudConfig(**{k: v for k, v in stored.items() if k in names})


def full_cloud(config: CloudConfig, size: int) -> np.ndarray:
    """Scaled RGB (3, size, size) of a window under full thick cloud, as training pastes it."""
    layer = cloud_layer(
        np.ones((size, size), np.float32), "thick", np.random.default_rng(CLOUD_FILL_SEED), config
    )
    return np.clip(layer.add, 0.0, 1.0).astype(np.float32)  # keep = 0: no ground shows through


def _sar_inputs(sar_db: np.ndarray) -> np.ndarray:
    """Scaled SAR channels (B, 3, h, w) with non-finite dB filled as training does (``fill``)."""
    filled = np.nan_to_num(
        sar_db, nan=SAR_NAN_FILL_DB, posinf=SAR_POSINF_FILL_DB, neginf=SAR_NEGINF_FILL_DB
    )
    return np.stack([sar_channels(window) for window in filled])


@dataclass(frozen=True)
class WindowPredictions:
    """Class probabilities of a batch of windows and which windows the fallback served."""

    probs: np.ndarray  # (B, classes) float32
    fallback: np.ndarray  # (B,) bool


class WindowClassifier:
    """Classify batches of raw windows (DN, dB) with the target model and the fallback policy.

    Args:
        target: The F2 target model (opt & SAR).
        policy: The fallback policy.
        sar_model: The F1 SAR auxiliary (needed by ``sar_auxiliary``).
        device: Torch device to run on.
        bf16: Run the models under bfloat16 autocast (CUDA only).

    """

    def __init__(
        self,
        target: MapModel,
        policy: FallbackPolicy = FallbackPolicy(),
        sar_model: MapModel | None = None,
        device: torch.device | str = "cpu",
        bf16: bool = False,
    ) -> None:
        if policy.kind == "sar_auxiliary" and sar_model is None:
            raise ValueError("fallback sar_auxiliary needs the SAR auxiliary model")
        self.target = target
        self.policy = policy
        self.sar_model = sar_model
        self.device = torch.device(device)
        self.bf16 = bf16 and self.device.type == "cuda"
        for m in (target, sar_model):
            if m is not None:
                m.model.to(self.device)
        self._fill: dict[int, np.ndarray] = {}

    @property
    def class_names(self) -> list[str]:
        """Output class names (the target model's)."""
        return self.target.class_names

    def cloud_fill(self, size: int) -> np.ndarray:
        """Full thick-cloud RGB of a window (cached per size)."""
        if size not in self._fill:
            self._fill[size] = full_cloud(self.target.clouds, size)
        return self._fill[size]

    def unusable_share(self, opt_valid: np.ndarray, cloud: np.ndarray | None) -> np.ndarray:
        """Share (B,) of each window's pixels that are optical nodata or cloud."""
        unusable = ~opt_valid if cloud is None else (~opt_valid | cloud)
        return unusable.reshape(len(unusable), -1).mean(axis=1)

    def __call__(
        self,
        opt_dn: np.ndarray | None,
        sar_db: np.ndarray,
        opt_valid: np.ndarray,
        cloud: np.ndarray | None = None,
    ) -> WindowPredictions:
        """Class probabilities of windows.

        Args:
            opt_dn: Optical R, G, B DN (B, 3, h, w), or None when there is no optical image.
            sar_db: VV, VH in dB (B, 2, h, w) (NaN allowed).
            opt_valid: Where the optical is not nodata (B, h, w) bool.
            cloud: Cloud mask (B, h, w) bool, or None (unknown: only nodata is unusable).

        """
        batch, _, height, width = sar_db.shape
        fill = self.cloud_fill(height)
        rgb = np.broadcast_to(fill, (batch, 3, height, width)).copy()
        if opt_dn is not None:
            rgb = np.where(opt_valid[:, None], scale_s2(opt_dn), rgb)
        fallback = np.zeros(batch, bool)
        if self.policy.kind != "none":
            fallback = self.unusable_share(opt_valid, cloud) > self.policy.threshold
        if self.policy.kind == "cloud_optical":
            rgb[fallback] = fill
        sar = _sar_inputs(sar_db)
        probs = np.zeros((batch, len(self.class_names)), np.float32)
        use_target = ~fallback if self.policy.kind == "sar_auxiliary" else np.ones(batch, bool)
        if use_target.any():
            probs[use_target] = self._run(self.target, rgb[use_target], sar[use_target])
        if not use_target.all():
            assert self.sar_model is not None
            probs[~use_target] = self._run(self.sar_model, None, sar[~use_target])
        return WindowPredictions(probs, fallback)

    def _run(self, model: MapModel, rgb: np.ndarray | None, sar: np.ndarray) -> np.ndarray:
        """Standardise with ``model``'s own constants and return its softmax (B, classes)."""
        std = model.standardisation
        inputs: dict[str, torch.Tensor] = {
            "image_sar": torch.from_numpy(np.stack([std.apply_sar(w) for w in sar]))
        }
        if rgb is not None:
            inputs["image_opt"] = torch.from_numpy(np.stack([std.apply_opt(w) for w in rgb]))
        batch = {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16),
        ):
            logits = model.model(batch)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()
