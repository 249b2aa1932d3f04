"""Runs as data: a method at one seed under one setting, with a stable id and its commands.

A run's identity has two parts. Its *configuration id* covers what the run is asked to do:
its method's YAML files, the profile fields they read (by value: a profile field no config of
the run reads does not count), the data-set file and the data's content where it reads target
data (:func:`~cloudxfer.runner.identity.data_fingerprint`: never a path), the other
overrides, its seed and its upstream runs' configuration ids. Its *code digest* covers the
Python code that trains it. Its run id hashes both with the upstream run ids, so new code
retrains a run and everything downstream of it; the executor tells a run made by other code
(same configuration id) from one of another configuration.

A run on the source domain alone (it and its upstream read no target data: the source
pre-training, SPL's restorer) has an id that no target-data setting enters, so tables and
figure levels that differ only in their target data share it: with a share folder the executor
copies a finished one instead of training it again.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cloudxfer.profile import (
    COMMAND_FIELDS,
    INIT_KEY,
    Profile,
    pretraining_of,
    profile_targets,
)
from cloudxfer.runner.identity import code_digest, data_fingerprint, digest
from cloudxfer.runner.methods import EXPERIMENTS, Method, method, upstream_closure

__all__ = [
    "EXPERIMENTS",
    "METRICS",
    "RECORD_FILENAME",
    "PlannedRun",
    "Setting",
    "dataset_path",
    "plan",
    "profile_path",
    "profile_values",
    "protocol_of",
]

CHECKPOINT = Path("checkpoints") / "best.ckpt"
"""A fit's result: the weights of its selected epoch (read downstream and by test)."""
RESUME = Path("checkpoints") / "last.ckpt"
"""A fit's last epoch: where an interrupted fit resumes."""
RECORD_FILENAME = "run.json"
"""What the runner records in each run folder (ids, method, seed, setting, commands)."""
METRICS = Path("test") / "metrics.json"
"""The test scores ``cloudxfer test`` writes in a run folder."""
PATH_FIELDS = ("data_root", "source_root")
"""Profile fields naming data on disk: they enter an id by the data's content."""
LOCATION_FIELDS = ("run_root", "store_dir")
"""Profile fields saying only where files go: never part of an id."""


def profile_path(profile: str) -> Path:
    """Resolve a profile name (``quick``) or YAML path to the profile file."""
    path = Path(profile)
    return path if path.suffix else EXPERIMENTS / "profiles" / f"{profile}.yaml"


def dataset_path(dataset: str | Path) -> Path:
    """Resolve a data-set name (``sen12ms_cloud``) or YAML path to the data-set file."""
    path = Path(dataset)
    return path if path.suffix else EXPERIMENTS / "data" / f"{dataset}.yaml"


@dataclass(frozen=True)
class Setting:
    """What every run of one chain or table shares: profile, data-set file, overrides."""

    profile: Path
    dataset: Path
    """The target data-set file (``experiments/data/<name>.yaml``), passed as ``--data``."""
    overrides: tuple[str, ...] = ()
    """CLI overrides for every run (data roots, ``--trainer.x=y``); ``--data.*`` ones reach
    only the runs that read the target data."""
    stage_overrides: tuple[tuple[str, str], ...] = ()
    """(method, CLI override) pairs for one method's runs only (``--stage.<method>.x=y``)."""
    run_root: Callable[[int], Path] = field(default=lambda seed: Path("runs") / f"seed{seed}")
    """Folder holding one seed's runs (one sub-folder per method)."""
    share_dir: Path | None = None
    """Folder of finished source-domain runs shared across tables (None: no sharing)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", dataset_path(self.dataset))

    def overrides_of(self, m: Method) -> list[str]:
        """Every override a run of ``m`` gets: the shared ones it reads, then its own."""
        shared = [a for a in self.overrides if m.reads == "target" or not a.startswith("--data")]
        return [*shared, *(arg for name, arg in self.stage_overrides if name == m.name)]

    def data_arguments(self, m: Method) -> list[str]:
        """Return ``--data=<data-set file>`` for a method that reads the target data.

        Its card's data settings are applied by the training command.
        """
        return [f"--data={self.dataset}"] if m.reads == "target" else []


@dataclass(frozen=True)
class PlannedRun:
    """One run: method, seed, folder, ids, the upstream runs it reads and its commands."""

    method: Method
    seed: int
    setting: Setting
    directory: Path
    run_id: str
    """Hash of its configuration id, its code digest and its upstream run ids."""
    config_id: str
    """Hash of what the run is asked to do (configs, data content, seed, upstream configs)."""
    code: str
    """Digest of the code that trains it."""
    upstream: tuple[PlannedRun, ...]
    fit_args: tuple[str, ...]
    test_args: tuple[str, ...]
    shared: bool = False
    """Whether it reads no target data, itself or upstream (shareable across tables)."""
    recorded_overrides: tuple[str, ...] = ()
    """The setting's overrides as ``run.json`` records them (data paths by content)."""

    @property
    def share_key(self) -> str | None:
        """The run id of a shareable run (None: it reads target data)."""
        return self.run_id if self.shared else None

    @property
    def shared_directory(self) -> Path | None:
        """Where the share folder keeps this run's training (None: not shared)."""
        if not self.shared or self.setting.share_dir is None:
            return None
        return self.setting.share_dir / f"{self.method.name}-{self.run_id}"

    @property
    def key(self) -> tuple[str, int]:
        """(method name, seed): unique within one plan."""
        return self.method.name, self.seed

    @property
    def checkpoint(self) -> Path:
        """The run's result checkpoint (what downstream runs and ``test`` read)."""
        return self.directory / CHECKPOINT

    @property
    def resume_checkpoint(self) -> Path:
        """The run's last-epoch checkpoint (where an interrupted fit resumes)."""
        return self.directory / RESUME

    def command(self, subcommand: str) -> list[str]:
        """Return the ``cloudxfer fit`` / ``test`` command line a user would type for this run."""
        args = self.fit_args if subcommand == "fit" else self.test_args
        return [sys.executable, "-m", "cloudxfer", subcommand, *args]

    def shell(self, subcommand: str) -> str:
        """Return the command as one shell line (``python -m cloudxfer ...``)."""
        return shlex.join(["python", *self.command(subcommand)[1:]])

    def describe(self) -> dict[str, object]:
        """Return what ``run.json`` records about the run (provenance, not identity)."""
        from cloudxfer import __version__
        from cloudxfer.runner.provenance import git_revision

        return {
            "id": self.run_id,
            "config_id": self.config_id,
            "code": self.code,
            "method": self.method.name,
            "seed": self.seed,
            "setting": {
                "profile": self.setting.profile.stem,
                "dataset": self.setting.dataset.stem,
                "overrides": list(self.recorded_overrides),
            },
            "upstream": {run.method.name: run.run_id for run in self.upstream},
            "version": __version__,
            "revision": git_revision(),
            "fit": self.shell("fit"),
            "test": self.shell("test") if self.method.tested else None,
        }


def _text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    return path.read_text(encoding="utf-8")


def profile_values(profile: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the profile's field values over the defaults, and its other sections (trainer)."""
    config = yaml.safe_load(_text(profile)) or {}
    values = {f.name: f.default for f in fields(Profile)}
    values.update(config.pop("profile", None) or {})
    return values, config


def _class_paths(texts: Sequence[str]) -> list[str]:
    """Return the model and data classes the run's configs name (the roots of its code digest)."""
    found = []
    for text in texts:
        config = yaml.safe_load(text) or {}
        for section in ("model", "data"):
            part = config.get(section) if section in config else None
            if part is None and "class_path" in config and section == "data":
                part = config  # a data-set file is the data section itself
            if isinstance(part, dict) and part.get("class_path"):
                found.append(str(part["class_path"]))
    return found


def _fields_read(setting: Setting, m: Method) -> set[str]:
    """Return the profile fields a run of ``m`` reads.

    Each argument the profile gives it (:func:`~cloudxfer.profile.profile_targets`) that its
    own configs leave unset, and the fields the training command reads itself.
    """
    merged = m.merged_config()
    if m.reads == "target":
        data = yaml.safe_load(_text(setting.dataset)) or {}
        merged["data"] = {"init_args": {**(data.get("init_args") or {}), **m.card.data_args}}
    read = set(COMMAND_FIELDS)
    for key, name in profile_targets(m.card).items():
        node: Any = merged
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            read.add(name)
    return read - set(LOCATION_FIELDS)


def _fingerprint(value: Any, fingerprints: dict[Path, str]) -> str:
    """Return a data path as its content's fingerprint (memoised within one plan)."""
    path = Path(str(value)).resolve()
    if path not in fingerprints:
        fingerprints[path] = data_fingerprint(path)
    return f"<data {fingerprints[path]}>"


def _portable_data_file(path: Path, fingerprints: dict[Path, str]) -> str:
    """Return a data-set file as an id reads it: its settings, data paths by content.

    A prepared data file names its root and patch table by absolute path; they enter by
    content, so moving the data (or preparing it into another file) keeps every id. Comments
    (a prepared file's header: its command line) do not enter.
    """
    config = yaml.safe_load(_text(path)) or {}
    init_args = config.get("init_args") if isinstance(config, dict) else None
    if isinstance(init_args, dict):
        for key, value in init_args.items():
            if isinstance(value, str) and value.startswith("/") and Path(value).exists():
                init_args[key] = _fingerprint(value, fingerprints)
    return yaml.safe_dump(config, sort_keys=True)


def _portable(arg: str, fingerprints: dict[Path, str]) -> str:
    """Return an override as a table compares it: a data path by its content."""
    name, _, value = arg.partition("=")
    if name.removeprefix("--profile.") in PATH_FIELDS:
        return f"{name}={_fingerprint(value, fingerprints)}"
    return arg


def _identity(
    setting: Setting, m: Method, overrides: list[str], fingerprints: dict[Path, str]
) -> tuple[dict[str, Any], str]:
    """Return what enters the run's configuration id (less seed and upstream), and its code.

    Data paths, in the profile or in an override (``--data.init_args.clouds.masks_dir=DIR``),
    enter by their content; ``fingerprints`` memoises them within one plan.
    """
    texts = {path.name: _text(path) for path in m.configs}
    if m.reads == "target":
        texts["data"] = _portable_data_file(setting.dataset, fingerprints)  # not its file name
    values, sections = profile_values(setting.profile)
    values = dict(values)
    other: list[str] = []
    for arg in overrides:
        name, _, text = arg.partition("=")
        if name.startswith("--profile."):
            values[name.removeprefix("--profile.")] = yaml.safe_load(text) if text else None
        elif text.startswith("/") and Path(text).exists():
            other.append(f"{name}={_fingerprint(text, fingerprints)}")
        else:
            other.append(arg)
    profile: dict[str, Any] = {}
    for name in sorted(_fields_read(setting, m)):
        value: Any = values.get(name)
        if name in PATH_FIELDS and value is not None:
            value = _fingerprint(value, fingerprints)
        profile[name] = value
    parts = {
        "method": m.name,
        "configs": texts,
        "profile": profile,
        "profile_sections": sections,
        "overrides": other,
    }
    return parts, code_digest(_class_paths(list(texts.values())))


def _profile_with(setting: Setting, overrides: Sequence[str]) -> dict[str, Any]:
    """Return the profile's fields as a run sees them: the file's, then its ``--profile.*``."""
    values, _ = profile_values(setting.profile)
    for arg in overrides:
        name, _, text = arg.partition("=")
        if name.startswith("--profile."):
            values[name.removeprefix("--profile.")] = yaml.safe_load(text) if text else None
    return values


def protocol_of(setting: Setting) -> str:
    """Return the table header's protocol line: initialisation, selection rule, rates."""
    values = _profile_with(setting, setting.overrides)
    init = values["init"]
    start = {"source": "source pre-training of their architecture", "scratch": "scratch"}
    return (
        f"students start from {start.get(init, init)} (init: {init}); every schedule ends "
        f"with its budget; selection: {values['selection']} epoch; pre-trained parameters at "
        f"lr {values['lr_pretrained']}, new ones at lr {values['lr']}"
    )


def needs_of(setting: Setting, m: Method) -> tuple[tuple[str, str], ...]:
    """(init argument, upstream method) pairs of a run: its card's, and its pre-training.

    The pre-training comes from the profile's ``init`` (:func:`~cloudxfer.profile.
    pretraining_of`), unless the method's configs set ``init`` themselves.
    """
    init = ((m.merged_config().get("model") or {}).get("init_args") or {}).get("init")
    pretraining = pretraining_of(m.card, _profile_with(setting, setting.overrides_of(m)), init)
    return (*m.needs, *(((INIT_KEY, pretraining),) if pretraining else ()))


def plan(methods: Sequence[str], seeds: Sequence[int], setting: Setting) -> list[PlannedRun]:
    """Every run the methods need at every seed, upstream first, each exactly once.

    A method that is not ``per_seed`` (a pre-trained model) runs at the first seed only, and
    every seed's runs read that run.
    """
    needs: dict[str, tuple[tuple[str, str], ...]] = {}

    def upstream_of(name: str) -> list[str]:
        if name not in needs:
            needs[name] = needs_of(setting, method(name))
        return [up for _, up in needs[name]]

    order = upstream_closure(list(methods), upstream_of)
    overrides = {name: setting.overrides_of(method(name)) for name in order}
    fingerprints: dict[Path, str] = {}
    identity = {
        name: _identity(setting, method(name), overrides[name], fingerprints) for name in order
    }
    recorded = tuple(_portable(arg, fingerprints) for arg in setting.overrides)
    runs: dict[tuple[str, int], PlannedRun] = {}
    for seed in seeds:
        root = setting.run_root(seed)
        for name in order:
            m = method(name)
            if not m.per_seed and seed != seeds[0]:
                runs[(name, seed)] = runs[(name, seeds[0])]  # one pre-trained model per plan
                continue
            upstream = tuple(runs[(up, seed)] for _, up in needs[name])
            if not m.per_seed and any(run.method.per_seed for run in upstream):
                raise ValueError(f"{name} is trained once for every seed: it cannot read "
                                 "a per-seed run")  # fmt: skip
            inputs = [
                f"--{a}={run.checkpoint}" for (a, _), run in zip(needs[name], upstream, strict=True)
            ]
            directory = root / m.name
            common = [
                "--config", str(setting.profile),
                *(a for path in m.configs for a in ("--config", str(path))),
                *setting.data_arguments(m),
                f"--profile.run_root={root}",
                f"--profile.seed={seed}",
                *overrides[name],
                *inputs,
                f"--trainer.default_root_dir={directory}",
                # inert unless --wandb.enabled=true: one W&B group per table, runs by method/seed
                f"--wandb.name={m.name}-seed{seed}",
                f"--wandb.group={root.parent.name}",
                f"--wandb.job_type={m.name}",
                f"--wandb.tags=[seed{seed},{m.name}]",
            ]  # fmt: skip
            parts, code = identity[name]
            config_id = digest(
                {**parts, "seed": seed, "upstream": [run.config_id for run in upstream]}
            )
            run_id = digest(
                {"config": config_id, "code": code, "upstream": [r.run_id for r in upstream]}
            )
            runs[(name, seed)] = PlannedRun(
                method=m,
                seed=seed,
                setting=setting,
                directory=directory,
                run_id=run_id,
                config_id=config_id,
                code=code,
                upstream=upstream,
                fit_args=tuple(common),
                test_args=(*common, f"--ckpt_path={directory / CHECKPOINT}"),
                shared=m.reads != "target" and all(run.shared for run in upstream),
                recorded_overrides=recorded,
            )
    return list({run.key: run for run in runs.values()}.values())
