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
    """Budgets, networks, optimiser and speed settings every method run reads (a profile YAML).

    No method YAML interpolates these: the training command gives each method the fields its
    card names (:func:`profile_targets`) wherever its own config leaves the argument unset.
    Defaults are the paper's settings (METHOD.md, "Networks and training").
    """

    run_root: str = "runs/sen12ms_cloud"
    data_root: str = "data/sen12ms_cloud"
    """Target data folder, where the data-set file names none (the runner sets it)."""
    source_root: str = "data/source"
    """Source data folder, where a source-domain method's data names none."""
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
    init: str = "source"
    """Where every network a method trains on the target domain starts (its ``initialise:
    protocol`` card): ``source`` (a backbone of its architecture pre-trained on the source
    set: ``source_pretrain``, or ``student_pretrain`` where the students' network differs),
    ``scratch``, or a local weights file (docs/method.md, "Initialisation")."""
    selection: Literal["last", "lowest_val"] = "last"
    """The epoch a fit hands on: ``last`` of its completed schedule (the paper's), or that of
    the lowest held-out loss (a sensitivity, for every method alike)."""
    batch_size: int = 64
    lr: float = 1e-2
    lr_pretrained: float = 1e-3
    """Learning rate of parameters that start pre-trained (heads and other new parameters
    train at ``lr``): one rule for every method (docs/method.md)."""
    momentum: float = 0.9
    weight_decay: float = 5e-4
    num_workers: int = 0
    seed: int = 0
    """Training seed: initialisation, shuffling, the labelled draw and held-out tiles."""
    threads: int | None = None
    """Intra-op compute threads; None uses every core not taken by a loader worker."""
    matmul_precision: Literal["highest", "high", "medium"] | None = None
    """float32 matmul precision of a CUDA run (``highest``, ``high``: TF32, ``medium``); None
    leaves torch's default. A CPU run ignores it."""
    channels_last: bool = False
    compile_model: bool = False
    pin_memory: bool = False
    patience: int | None = None
    """Early stopping: end a fit once its held-out loss has not improved for this many epochs
    (None: train every epoch of the budget). Only with ``--model.init_args.scheduler=plateau``,
    the schedule that follows the held-out loss (never a cosine cut short)."""
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


Budget = Literal["pretrain", "finetune", "auxiliary", "target", "translation"]
"""Which of the profile's epoch budgets a method trains for (``epochs_<budget>``)."""
Stream = Literal["labelled", "clear_twins", "source"]
"""Data a method reads beside its training tiles: labelled batches paired with every step
(DSAN), the clear twins of pasted clouds (SPL, CycIT), the source images (CycIT's
pre-training)."""


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
    network: Literal["source", "target"] | None = None
    """Which of the profile's networks it trains (``<network>_backbone``): f_S's or the
    students'."""
    budget: Budget | None = None
    """Which of the profile's epoch budgets it trains for."""
    pretrain_batches: bool = False
    """Epochs of ``translation_pretrain_batches`` batches (SPL's and CycIT's pre-training)."""
    streams: list[Stream] = field(default_factory=list)
    """Data streams it reads beside its training tiles."""
    data_args: dict[str, Any] = field(default_factory=dict)
    """Data arguments of the method over the data-set file's (CycIT's batches of 8)."""
    extends: str | None = None
    """A base method whose YAML comes first (an ablation states only what differs)."""
    initialise: Literal["protocol", "upstream"] | None = None
    """How the network it trains starts: ``protocol``, as the profile's ``init`` says;
    ``upstream``, from a network its ``needs`` name (f_S from f_pre, TTL from f_S). Either
    way pre-trained parameters train at the profile's ``lr_pretrained``."""


PRETRAININGS = {"source": "source_pretrain", "target": "student_pretrain"}
"""The source-set pre-training of each of the profile's networks (``init: source``)."""
INIT_KEY = "model.init_args.init"


def pretraining_of(card: MethodCard, profile: Any, config_init: Any = None) -> str | None:
    """Return the method whose result starts this method's network, or None.

    Only for a card that ``initialise: protocol`` under ``init: source`` and whose configs
    leave ``init`` unset (``config_init``). Students whose network is f_S's architecture start
    from the source pre-training itself; others from ``student_pretrain``. ``profile``: the
    profile's fields (a mapping or a parsed config section: anything with ``get``).
    """
    if card.initialise != "protocol" or profile.get("init") != "source" or config_init is not None:
        return None
    network = profile.get(f"{card.network or 'source'}_backbone")
    same = network == profile.get("source_backbone")
    return PRETRAININGS["source"] if same else PRETRAININGS["target"]


def profile_targets(card: MethodCard, reads_source: bool | None = None) -> dict[str, str]:
    """Return the arguments a method takes from the profile: dotted config key -> field.

    One table for the training command (which fills each key the method's configs leave unset)
    and for the runner (whose run ids cover exactly the fields a run reads).
    """
    targets = {
        "seed_everything": "seed",
        "model.init_args.lr": "lr",
        "model.init_args.momentum": "momentum",
        "model.init_args.weight_decay": "weight_decay",
        "model.init_args.channels_last": "channels_last",
        "model.init_args.compile_model": "compile_model",
        "data.init_args.split_seed": "seed",
        "data.init_args.batch_size": "batch_size",
        "data.init_args.num_workers": "num_workers",
        "data.init_args.pin_memory": "pin_memory",
        "data.init_args.store": "store",
        "data.init_args.store_dir": "store_dir",
    }
    source = card.reads == "source" if reads_source is None else reads_source
    targets["data.init_args.root"] = "source_root" if source else "data_root"
    if card.network:
        targets["model.init_args.backbone"] = f"{card.network}_backbone"
    if card.budget:
        targets["trainer.max_epochs"] = f"epochs_{card.budget}"
    if card.pretrain_batches:
        targets["trainer.limit_train_batches"] = "translation_pretrain_batches"
    if "source" in card.streams:
        targets["data.init_args.source_stream"] = "source_root"
    targets["model.init_args.selection"] = "selection"
    if card.initialise:
        targets["model.init_args.lr_pretrained"] = "lr_pretrained"
    if card.initialise == "protocol":
        targets[INIT_KEY] = "init"
    return targets


COMMAND_FIELDS = ("threads", "num_workers", "matmul_precision", "patience")
"""Profile fields the training command reads itself (threads, early stopping): every run
reads them."""
STREAM_ARGUMENTS: dict[str, str] = {"labelled": "labelled_stream", "clear_twins": "clear_twins"}
"""The data argument that switches a declared stream on (``source`` takes the source root)."""


def _unset(value: Any, key: str) -> bool:
    """Whether a parsed value was left to the profile.

    LightningCLI's ``seed_everything`` defaults to True (a random seed, never what a table
    wants), so True counts as unset there.
    """
    return value is None or (key == "seed_everything" and value is True)


def apply_profile(config: Any, method_name: str | None = None) -> dict[str, Any]:
    """Give a parsed method config the profile's values and the card's data settings.

    ``config`` is the parsed configuration of one command (a jsonargparse ``Namespace``:
    dotted keys, ``in``, ``get`` and item assignment). First the card's data arguments and
    streams are set on the data, over the data-set file's values; then every argument of
    :func:`profile_targets` that the configs and the command line left unset takes the
    profile's field; an upstream checkpoint the card ``needs`` defaults to that method's
    result under the profile's ``run_root``, and the run folder to ``<run_root>/<method_name>``.

    Returns:
        The keys set from the profile, with their values (for tests and ``--print_config``).

    """
    card_fields = config.get("method")
    card = MethodCard(**(card_fields.as_dict() if hasattr(card_fields, "as_dict") else {}))
    profile = config.get("profile")
    data_args = "data.init_args"
    filled: dict[str, Any] = {}
    if data_args in config and config.get(data_args) is not None:
        settings = dict(card.data_args)
        settings.update({STREAM_ARGUMENTS[s]: True for s in card.streams if s in STREAM_ARGUMENTS})
        for key, value in settings.items():
            if f"{data_args}.{key}" not in config:
                raise ValueError(
                    f"method card: data argument {key!r} is not one of the data module's"
                )
            config[f"{data_args}.{key}"] = value
    if profile is None:
        return filled
    pretraining = pretraining_of(card, profile, config.get(INIT_KEY) if INIT_KEY in config else 0)
    for key, name in profile_targets(card).items():
        if key in config and _unset(config.get(key), key):
            config[key] = filled[key] = profile.get(name)
    run_root = profile.get("run_root")
    if pretraining is not None:
        config[INIT_KEY] = filled[INIT_KEY] = f"{run_root}/{pretraining}/checkpoints/best.ckpt"
    for key, upstream in card.needs.items():
        if key in config and config.get(key) is None:
            config[key] = filled[key] = f"{run_root}/{upstream}/checkpoints/best.ckpt"
    root = "trainer.default_root_dir"
    if method_name and root in config and config.get(root) is None:
        config[root] = filled[root] = f"{run_root}/{method_name}"
    return filled
