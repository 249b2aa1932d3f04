"""A scene classifier with a bottleneck layer between encoder and head (DSAN's network).

DSAN (Zhu et al., TNNLS 2020) puts a 256-d linear layer after the pooled backbone features and
aligns those bottleneck features; the head classifies them. The encoder is the plain
:class:`~cloudxfer.models.SceneClassifier` encoder, so the protocol's initial weights load
into it unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from cloudxfer.models.classifiers import SceneClassifier

__all__ = ["BottleneckClassifier"]


class BottleneckClassifier(SceneClassifier):
    """Encoder, a linear bottleneck (optionally ReLU) and a linear head.

    Args:
        backbone: torchvision model name.
        inputs: sample keys the network classifies (its modality), in channel order.
        num_classes: number of output classes.
        weights: torchvision weights enum name or None.
        width: bottleneck width (DSAN: 256).
        relu: a ReLU after the bottleneck (DSAN's reference code has none).
        stem_inputs: the input keys the pre-trained stem is adapted to (default ``inputs``):
            DSAN reads its labelled optical source through the same encoder as its target, so
            its stem starts as the RGB one even where it classifies SAR.

    """

    def __init__(
        self,
        backbone: str,
        inputs: list[str],
        num_classes: int,
        weights: str | None = None,
        width: int = 256,
        relu: bool = False,
        stem_inputs: list[str] | None = None,
    ) -> None:
        super().__init__(backbone, inputs, num_classes, weights)
        if width < 1:
            raise ValueError(f"BottleneckClassifier: width must be >= 1, got {width}")
        encoder_width = self.head.in_features
        layers: list[nn.Module] = [nn.Linear(encoder_width, width)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        self.bottleneck = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        self.stem_inputs = list(stem_inputs or inputs)
        options: dict[str, Any] = {"width": width, "relu": relu, "stem_inputs": self.stem_inputs}
        self.spec = {**self.spec, "kind": "bottleneck", "options": options}

    def encoder_inputs(self) -> list[tuple[str, list[str]]]:
        """Return (module name, input keys) of its encoder: the stem follows ``stem_inputs``."""
        return [("encoder", list(self.stem_inputs))]

    def embed(self, images: Tensor) -> Tensor:
        """Bottleneck features of an image batch (B, C, H, W) of any stream, shape (B, width)."""
        return self.bottleneck(self.encoder(images))

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """Bottleneck features of the network's own inputs, shape (B, width)."""
        return self.bottleneck(super().features(batch))
