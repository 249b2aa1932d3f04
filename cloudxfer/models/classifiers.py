"""Scene classifiers over dict samples: single modality, early fusion and late fusion.

A model reads the sample keys named in ``inputs`` (``image_opt``, ``image_sar``), so one class
covers the single-modality source/auxiliary models and the early-fusion target (3+3 channels
concatenated, as the paper draws one "Opt & SAR" input). Late fusion (one encoder per modality,
features concatenated before one head) serves TLF and OGM-GE style methods.
Every model is described by a plain ``spec`` dict saved in checkpoints, so a teacher can be
rebuilt from any checkpoint without knowing the stage that trained it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cloudxfer.models.backbones import build_encoder

__all__ = ["LateFusionClassifier", "SceneClassifier", "build_model", "modality_of"]

CHANNELS_PER_INPUT = 3  # RGB for image_opt; VV, VH, VV-VH for image_sar
MODALITY_NAMES = {"image_opt": "opt", "image_sar": "sar"}


def modality_of(inputs: list[str]) -> str:
    """Short modality name for a list of input keys, e.g. ``opt``, ``sar`` or ``opt+sar``."""
    return "+".join(MODALITY_NAMES.get(key, key) for key in inputs)


class SceneClassifier(nn.Module):
    """Encoder + linear head over the channel-concatenation of ``inputs`` (early fusion).

    Args:
        backbone: torchvision model name.
        inputs: sample keys to read, in channel order.
        num_classes: number of output classes.
        weights: torchvision weights enum name or None.

    """

    def __init__(
        self, backbone: str, inputs: list[str], num_classes: int, weights: str | None = None
    ) -> None:
        super().__init__()
        self.spec: dict[str, Any] = {
            "kind": "scene",
            "backbone": backbone,
            "inputs": list(inputs),
            "num_classes": num_classes,
        }
        self.inputs = list(inputs)
        self.encoder, width = build_encoder(backbone, CHANNELS_PER_INPUT * len(inputs), weights)
        self.head = nn.Linear(width, num_classes)

    def encoder_inputs(self) -> list[tuple[str, list[str]]]:
        """Return (module name, input keys) of its encoder: what pre-trained weights start."""
        return [("encoder", list(self.inputs))]

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """Pooled encoder features, shape (B, width)."""
        x = torch.cat([batch[key] for key in self.inputs], dim=1)
        return self.encoder(x)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Class logits, shape (B, num_classes)."""
        return self.head(self.features(batch))


class LateFusionClassifier(nn.Module):
    """One encoder per input key; pooled features concatenated before one linear head.

    Args:
        backbone: torchvision model name used for every encoder.
        inputs: sample keys, one encoder each.
        num_classes: number of output classes.
        weights: torchvision weights enum name or None.

    """

    def __init__(
        self, backbone: str, inputs: list[str], num_classes: int, weights: str | None = None
    ) -> None:
        super().__init__()
        self.spec: dict[str, Any] = {
            "kind": "late_fusion",
            "backbone": backbone,
            "inputs": list(inputs),
            "num_classes": num_classes,
        }
        self.inputs = list(inputs)
        encoders: dict[str, nn.Module] = {}
        self.widths: dict[str, int] = {}
        for key in inputs:
            encoders[key], self.widths[key] = build_encoder(backbone, CHANNELS_PER_INPUT, weights)
        self.encoders = nn.ModuleDict(encoders)
        self.head = nn.Linear(sum(self.widths.values()), num_classes)

    def encoder_inputs(self) -> list[tuple[str, list[str]]]:
        """Return (module name, input key) of each modality's encoder."""
        return [(f"encoders.{key}", [key]) for key in self.inputs]

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """Concatenated per-modality features, shape (B, sum of widths)."""
        return torch.cat([self.encoders[key](batch[key]) for key in self.inputs], dim=1)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Class logits, shape (B, num_classes)."""
        return self.head(self.features(batch))

    def unimodal_logits(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's share of the fused logits (its slice of the head), as OGM-GE uses."""
        return self.forward_parts(batch)[1]

    def forward_parts(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Fused logits and each modality's share of them, from one pass of the encoders.

        The shares (features times the modality's slice of the head, plus an equal part of the
        bias) add up to the fused logits.
        """
        parts: dict[str, Tensor] = {}
        start = 0
        for key in self.inputs:
            width = self.widths[key]
            weight = self.head.weight[:, start : start + width]
            share = self.encoders[key](batch[key]) @ weight.T
            parts[key] = share + self.head.bias / len(self.inputs)
            start += width
        return torch.stack(list(parts.values())).sum(0), parts


def build_model(spec: dict[str, Any], weights: str | None = None) -> nn.Module:
    """Rebuild a classifier from its ``spec`` (as saved in a checkpoint).

    A kind's extra constructor arguments (DSAN's bottleneck width) sit in ``spec["options"]``.
    """
    from cloudxfer.models.bottleneck import BottleneckClassifier  # a SceneClassifier subclass

    kinds: dict[str, type[nn.Module]] = {
        "scene": SceneClassifier,
        "late_fusion": LateFusionClassifier,
        "bottleneck": BottleneckClassifier,
    }
    kind = spec.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown model kind {kind!r} in spec {spec}")
    return kinds[kind](
        backbone=spec["backbone"],
        inputs=list(spec["inputs"]),
        num_classes=int(spec["num_classes"]),
        weights=weights,
        **dict(spec.get("options") or {}),
    )
