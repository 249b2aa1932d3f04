"""torchvision backbones as feature encoders with a configurable number of input channels.

The paper uses ResNet-50 (source) and GoogLeNet (auxiliaries and target); any torchvision
classification model whose stem is a ``Conv2d`` and whose head is a ``Linear`` works. Pretrained
weights are a config switch (a torchvision weights enum name, e.g. ``IMAGENET1K_V2``), off by
default because nothing can be downloaded in offline set-ups.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

__all__ = ["build_encoder", "replace_first_conv"]

# Per-architecture constructor options: GoogLeNet's auxiliary heads and input re-scaling are
# ImageNet-training details that do not apply to 64 px multi-sensor tiles.
_EXTRA_KWARGS: dict[str, dict[str, object]] = {
    "googlenet": {"aux_logits": False, "transform_input": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "transform_input": False, "init_weights": True},
}


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
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown torchvision classification model {name!r}")
    kwargs = dict(_EXTRA_KWARGS.get(name, {}))
    if weights is not None:
        kwargs.pop("init_weights", None)
    model = torchvision.models.get_model(name, weights=weights, **kwargs)
    width = _strip_head(model)
    replace_first_conv(model, in_channels)
    return model, width
