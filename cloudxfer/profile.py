"""Run-level settings a method config holds beside its classes: profile, W&B, method card.

A light module (dataclasses only): the runner reads profile fields and their defaults from here
without importing Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MethodCard", "Profile", "WandbOptions"]


@dataclass
class Profile:
    """Values stage configs interpolate as ``${profile.<name>}`` (set by a profile YAML).

    Defaults are the paper's settings (METHOD.md, "Networks and training").
    """

    run_root: str = "runs/sen12ms_cloud"
    data_root: str = "data/sen12ms_cloud"
    source_root: str = "data/source"
    source_backbone: str = "resnet50"
    target_backbone: str = "googlenet"
    epochs_pretrain: int = 200
    epochs_finetune: int = 200
    epochs_auxiliary: int = 200
    epochs_target: int = 200
    epochs_translation: int = 200
    """Bound for SPL's and CycIT's adaptation on the 20 labelled pairs per class (short epochs)."""
    translation_pretrain_batches: int | float = 1.0
    """Training batches per epoch of SPL's and CycIT's pre-training (Lightning's
    ``limit_train_batches``: a share or a count; each epoch draws a new shuffle)."""
    batch_size: int = 64
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    num_workers: int = 0
    seed: int = 0
    """Training seed: initialisation, shuffling, the labelled draw and held-out tiles."""
    data_seed: int = 0
    """Seed of what the data fixes for every training seed: the test split, the pasted clouds."""
    threads: int | None = None
    """Intra-op compute threads; None uses every core not taken by a loader worker."""
    matmul_precision: Literal["highest", "high", "medium"] | None = None
    """float32 matmul precision of a CUDA run (``highest``, ``high``: TF32, ``medium``); None
    leaves torch's default. A CPU run ignores it."""
    channels_last: bool = False
    compile_model: bool = False
    pin_memory: bool = False
    cloudy_share: float = 0.5
    """Share of target tiles given a pasted cloud (the paper: 0.5; its Fig. 9 sweeps it)."""
    cloud_masks: str | None = None
    """Folder of real cloud masks to paste (None: simulated masks)."""
    patience: int | None = None
    """Early stopping: end a fit once its held-out loss has not improved for this many epochs
    (None: train every epoch). Convergence is judged with the same patience (5 when None)."""
    store: bool = True
    store_dir: str | None = None
    """Packed tile stores and cached teacher logits; None: ``$CLOUDXFER_STORE_DIR`` or
    ``~/.cache/cloudxfer/store``."""


@dataclass
class WandbOptions:
    """Weights & Biases logging, added beside the always-on CSV logger when enabled.

    Runs offline unless ``WANDB_MODE`` says otherwise, so nothing leaves the machine by default.
    """

    enabled: bool = False
    project: str = "cloudxfer"
    name: str | None = None
    group: str | None = None
    """Runs shown together (the runner sets the table's output folder name)."""
    job_type: str | None = None
    """Kind of run (the runner sets the stage, e.g. ``target``)."""
    tags: list[str] | None = None
    """Free labels (the runner sets ``seed<k>`` and the method name)."""


@dataclass
class MethodCard:
    """A method YAML's ``method:`` block: what the runner needs to know about the method.

    ``cloudxfer fit`` parses it (so a method YAML is a valid config) and ignores it.
    """

    label: str = ""
    """Row label in result tables and figures (empty: an upstream stage, never tested)."""
    row: str = ""
    """Its label in a paper table (under its group); defaults to ``label``."""
    group: str = ""
    """Modality group of the row: ``Opt``, ``SAR``, ``Opt & SAR`` or ``Source``."""
    needs: dict[str, str] = field(default_factory=dict)
    """Constructor argument (``model.init_args.teacher``) -> upstream method whose
    ``best.ckpt`` it gets."""
    per_seed: bool = True
    """False for a pre-trained model the paper takes as given (f_pre, SPL's restorer, CycIT's
    translator): trained once, at a table's first seed, and read by every seed's runs."""
    reads: Literal["target", "source"] = "target"
    """``target``: the runner passes the data-set file as ``--data``; ``source``: the method
    YAML configures its own source-domain data."""
    data_args: dict[str, Any] = field(default_factory=dict)
    """Data arguments the method needs beyond the data-set file (``clear_twins: true``); the
    runner passes them after it as ``--data.init_args.<key>=<value>``."""
    extends: str | None = None
    """A base method whose YAML comes first (an ablation states only what differs)."""
