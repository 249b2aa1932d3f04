"""Stage metadata written into every checkpoint, and its validation when a checkpoint is reused.

Checkpoints are the only link between stages (source -> F1 -> F2). Each carries a ``cloudxfer``
block naming its stage, modality, class names, normalisation and model spec, so a teacher can
be rebuilt and a mismatch (wrong stage, another class scheme, another modality) is caught with
an error naming the file instead of a shape error deep inside ``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cloudxfer.models import build_model

__all__ = [
    "CheckpointError",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "STAGES",
    "load_frozen_model",
    "load_weights",
    "read_metadata",
    "validate_metadata",
]

METADATA_KEY = "cloudxfer"
FORMAT_VERSION = 1
STAGES: tuple[str, ...] = ("source_pretrain", "source_finetune", "auxiliary", "target")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit where it is used."""


def _load(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        # Lightning checkpoints hold hyper-parameters and loop state (plain Python objects),
        # which the weights-only unpickler rejects; these files come from the user's own runs.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as err:  # noqa: BLE001
        # Unpickling damaged bytes fails in arbitrary ways (UnicodeDecodeError, ValueError,
        # AttributeError, ModuleNotFoundError, ... found by tests/test_fuzz.py): any failure
        # to load is the user's file being unreadable, said with its path.
        raise CheckpointError(f"{path}: not a readable checkpoint ({err!r})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def _metadata(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    meta = checkpoint.get(METADATA_KEY)
    if not isinstance(meta, dict) or "stage" not in meta:
        raise CheckpointError(f"{path}: checkpoint carries no cloudxfer stage metadata")
    return meta


def read_metadata(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Return the ``cloudxfer`` metadata block of a checkpoint, or raise CheckpointError.

    ``mmap``: map the weights instead of reading them, a cheap check that the file loads (a
    truncated file or damaged record fails either way; torch keeps no checksum of the weights).
    """
    return _metadata(_load(path, mmap), path)


def validate_metadata(
    meta: dict[str, Any],
    path: str | Path,
    stages: Collection[str] | None = None,
    class_names: Sequence[str] | None = None,
    modality: str | None = None,
    methods: Collection[str] | None = None,
) -> None:
    """Check a checkpoint's stage, method, class scheme and modality against the caller's.

    ``methods``: where a checkpoint serves in a role of the chain (f_S, an F1 auxiliary, f_pre),
    a checkpoint recording another method (a comparison row such as Finetune or KD-S, whose
    stage class it shares) is refused; checkpoints recording no method are the stages' own.

    Raises:
        CheckpointError: naming ``path`` and the first mismatch found.

    """
    if stages is not None and meta["stage"] not in stages:
        raise CheckpointError(
            f"{path}: checkpoint is from stage {meta['stage']!r}, expected one of {sorted(stages)}"
        )
    method = meta.get("method")
    if methods is not None and method is not None and method not in methods:
        raise CheckpointError(
            f"{path}: checkpoint is from method {method!r}, a row of its own; this role takes "
            f"a checkpoint of {sorted(methods)}"
        )
    if class_names is not None:
        theirs = list(meta.get("class_names") or [])
        if len(theirs) != len(class_names):
            raise CheckpointError(
                f"{path}: checkpoint has {len(theirs)} classes {theirs}, "
                f"this run has {len(class_names)} {list(class_names)}"
            )
        if theirs != list(class_names):
            raise CheckpointError(
                f"{path}: checkpoint classes {theirs} differ from this run's {list(class_names)}"
            )
    if modality is not None and meta.get("modality") != modality:
        raise CheckpointError(
            f"{path}: checkpoint modality is {meta.get('modality')!r}, expected {modality!r}"
        )


def load_frozen_model(
    path: str | Path,
    stages: Collection[str] | None = None,
    class_names: Sequence[str] | None = None,
    modality: str | None = None,
    methods: Collection[str] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a stage's model from its checkpoint, validated, in eval mode, without gradients.

    Returns:
        ``(model, metadata)``.

    """
    checkpoint = _load(path)
    meta = _metadata(checkpoint, path)
    validate_metadata(meta, path, stages, class_names, modality, methods)
    model = build_model(meta["model"])
    prefix = "model."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the recorded model ({err})") from err
    model.eval()
    model.requires_grad_(False)
    return model, meta


def load_weights(
    path: str | Path,
    stages: Collection[str],
    methods: Collection[str] | None = None,
    prefix: str = "model.",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return a validated checkpoint's weights under ``prefix`` (prefix removed) and metadata.

    For networks no classifier ``spec`` rebuilds (the SPL row's restorer): the caller builds
    the network and loads the weights itself.

    Raises:
        CheckpointError: naming ``path``: unreadable, another stage or method, no weights.

    """
    checkpoint = _load(path)
    meta = _metadata(checkpoint, path)
    validate_metadata(meta, path, stages, methods=methods)
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    if not state:
        raise CheckpointError(f"{path}: checkpoint holds no weights under {prefix!r}")
    return state, meta
