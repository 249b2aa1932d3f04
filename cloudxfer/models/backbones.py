"""torchvision backbones as feature encoders with a configurable number of input channels.

The paper uses ResNet-50 (source) and GoogLeNet (auxiliaries and target); any torchvision
classification model whose stem is a ``Conv2d`` and whose head is a ``Linear`` works. Pretrained
weights are a config switch (a torchvision weights enum name, e.g. ``IMAGENET1K_V2``), off by
default because nothing can be downloaded in offline set-ups.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

__all__ = ["LOCAL_MODELS", "build_encoder", "replace_first_conv"]

# Per-architecture constructor options: GoogLeNet's auxiliary heads and input re-scaling are
# ImageNet-training details that do not apply to 64 px multi-sensor tiles.
_EXTRA_KWARGS: dict[str, dict[str, object]] = {
    "googlenet": {"aux_logits": False, "transform_input": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "transform_input": False, "init_weights": True},
}


def _resnet10(num_classes: int = 1000) -> nn.Module:
    """ResNet with one basic block per stage (torchvision's ResNet class, no weights).

    A CPU-sized student for the quick profile: about 2x the training throughput of
    GoogLeNet at 64 px on 2 cores (``benchmarks/backbones.py``), same stem and head layout.
    """
    return torchvision.models.ResNet(
        torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=num_classes
    )


LOCAL_MODELS: dict[str, Callable[[], nn.Module]] = {"resnet10": _resnet10}
"""Networks built from torchvision classes that torchvision does not register by name."""


def _first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """Return (parent, attribute name, conv) of the first Conv2d in ``model``."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                return parent, name, child
    raise ValueError(f"{type(model).__name__} has no Conv2d stem to adapt")


def replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Give ``model`` a stem with ``in_channels`` inputs, reusing RGB weights where present.

    Extra channels are initialised with the mean of the pretrained RGB filters, so a pretrained
    stem keeps its response to the first three channels.
    """
    parent, name, conv = _first_conv(model)
    if conv.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        for c in range(in_channels):
            new.weight[:, c : c + 1] = conv.weight[:, c : c + 1] if c < conv.in_channels else mean
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(parent, name, new)


def _strip_head(model: nn.Module) -> int:
    """Replace the final Linear classifier by Identity and return its input width."""
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            width = head[-1].in_features
            head[-1] = nn.Identity()
            return width
    raise ValueError(f"cannot find a Linear head on {type(model).__name__}")


def build_encoder(
    name: str, in_channels: int = 3, weights: str | None = None
) -> tuple[nn.Module, int]:
    """Build a torchvision model without its classifier head.

    Args:
        name: torchvision model name (``resnet50``, ``googlenet``, ``resnet18``, ...).
        in_channels: number of input channels (3 for one modality, 6 for early fusion).
        weights: torchvision weights enum name, or None for random initialisation.

    Returns:
        ``(encoder, feature_width)``; the encoder maps (B, C, H, W) to (B, feature_width).

    """
    if name in LOCAL_MODELS:
        if weights is not None:
            raise ValueError(f"{name!r} has no pretrained weights; use weights: null")
        model = LOCAL_MODELS[name]()
    elif name in torchvision.models.list_models(module=torchvision.models):
        kwargs = dict(_EXTRA_KWARGS.get(name, {}))
        if weights is not None:
            kwargs.pop("init_weights", None)
        model = torchvision.models.get_model(name, weights=weights, **kwargs)
    else:
        raise ValueError(f"unknown torchvision classification model {name!r}")
    width = _strip_head(model)
    replace_first_conv(model, in_channels)
    return model, width
