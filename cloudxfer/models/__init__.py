"""Backbones and scene classifiers."""

from cloudxfer.models.backbones import build_encoder, replace_first_conv
from cloudxfer.models.bottleneck import BottleneckClassifier
from cloudxfer.models.classifiers import (
    LateFusionClassifier,
    SceneClassifier,
    build_model,
    modality_of,
)

__all__ = [
    "BottleneckClassifier",
    "LateFusionClassifier",
    "SceneClassifier",
    "build_encoder",
    "build_model",
    "modality_of",
    "replace_first_conv",
]
