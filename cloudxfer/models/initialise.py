"""Start a network's encoders from pre-trained weights (the protocol's ``init``).

Every network a method trains on the target domain starts the same way: from scratch, from a
backbone pre-trained on the source set (a ``source_pretrain`` checkpoint of the same
architecture), or from a local weights file (e.g. torchvision ImageNet weights a user saved:
nothing is downloaded). Only encoders are copied; heads (other classes) start afresh.

One rule adapts the pre-trained RGB stem to any input (docs/method.md, "Initialisation"):
the channels of an optical input take the RGB filters, each SAR channel (VV, VH, VV-VH, with
no colour meaning) the mean of the RGB filters, as for a grey image; the kernel is then
scaled by 3 / channels, so an input whose channels are equal keeps the stem's response.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "InitialisationError",
    "encoders_of",
    "load_encoder_state",
    "read_encoder_state",
    "stem_weight",
]

RGB_INPUTS = frozenset({"image_opt"})
"""Input keys whose three channels are R, G, B (take the pre-trained filters as they are)."""


class InitialisationError(ValueError):
    """Initial weights are missing, unreadable, or do not fit the network."""


def stem_weight(rgb: Tensor, inputs: Sequence[str]) -> Tensor:
    """Return a stem kernel for ``inputs`` (3 channels each) from a pre-trained RGB kernel.

    Args:
        rgb: the pre-trained kernel, shape (out, 3, k, k).
        inputs: sample keys in channel order (``image_opt``, ``image_sar``).

    Returns:
        The kernel, shape (out, 3 * len(inputs), k, k).

    """
    if rgb.shape[1] != 3:
        raise InitialisationError(f"a pre-trained stem has 3 input channels, not {rgb.shape[1]}")
    grey = rgb.mean(dim=1, keepdim=True).expand_as(rgb)
    parts = [rgb if key in RGB_INPUTS else grey for key in inputs]
    return torch.cat(parts, dim=1) * (3.0 / (3 * len(inputs)))


def encoders_of(model: nn.Module) -> list[tuple[str, nn.Module, list[str]]]:
    """Return (state-dict prefix, encoder, input keys) of every encoder a classifier holds.

    A classifier names them itself (``encoder_inputs``): one early-fusion encoder, or one
    encoder per modality (late fusion).
    """
    named = getattr(model, "encoder_inputs", None)
    if named is None:
        raise InitialisationError(f"{type(model).__name__} names no encoders to initialise")
    return [(prefix, dict(model.named_modules())[prefix], keys) for prefix, keys in named()]


def _stem_key(encoder: nn.Module) -> str:
    """Return the state-dict key of the encoder's first convolution's weight."""
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    raise InitialisationError(f"{type(encoder).__name__} has no convolution stem")


def read_encoder_state(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """Read an encoder's pre-trained weights from a checkpoint or a plain weights file.

    A cloudxfer checkpoint (``source_pretrain``, or any single-encoder classifier) gives its
    encoder and the backbone it records; a plain ``state_dict`` file (torchvision's layout)
    gives every tensor but the classifier head's, and an empty backbone name (unchecked).

    Raises:
        InitialisationError: the file is missing or unreadable, or holds no encoder.

    """
    path = Path(path)
    if not path.is_file():
        raise InitialisationError(f"{path}: initial weights not found")
    try:
        # weights files and checkpoints of the user's own runs (see checkpoints._load)
        loaded: Any = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise InitialisationError(f"{path}: not a readable weights file ({err!r})") from err
    if isinstance(loaded, dict) and "state_dict" in loaded and "cloudxfer" in loaded:
        spec = loaded["cloudxfer"].get("model") or {}
        if spec.get("kind") != "scene":
            raise InitialisationError(
                f"{path}: a checkpoint of a {spec.get('kind')!r} model; initial weights come "
                "from a single-encoder classifier (e.g. source_pretrain)"
            )
        prefix = "model.encoder."
        state = {
            k[len(prefix) :]: v for k, v in loaded["state_dict"].items() if k.startswith(prefix)
        }
        return state, str(spec.get("backbone", ""))
    if isinstance(loaded, dict) and all(isinstance(v, Tensor) for v in loaded.values()):
        heads = ("fc.", "classifier.", "head.", "heads.", "aux1.", "aux2.")
        return {k: v for k, v in loaded.items() if not k.startswith(heads)}, ""
    raise InitialisationError(f"{path}: neither a cloudxfer checkpoint nor a state_dict")


def load_encoder_state(
    encoder: nn.Module, state: dict[str, Tensor], inputs: Sequence[str], source: str | Path
) -> list[str]:
    """Copy pre-trained weights into ``encoder`` (stem adapted to ``inputs``); strict.

    Returns:
        The names of the encoder's parameters now pre-trained (all of them).

    Raises:
        InitialisationError: naming ``source``, when a tensor is missing, extra or mis-shaped.

    """
    stem = _stem_key(encoder)
    state = dict(state)
    if stem not in state:
        raise InitialisationError(f"{source}: no stem weight {stem!r} (another architecture?)")
    state[stem] = stem_weight(state[stem], inputs)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InitialisationError(
            f"{source}: weights do not fit the network ({' '.join(str(err).split())[:400]})"
        ) from None
    return [name for name, _ in encoder.named_parameters()]
