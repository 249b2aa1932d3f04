"""Runs as data: a method at one seed under one setting, with a stable id and its commands.

A run's id hashes everything that decides its resolved config: the stage, data and profile
YAML files, the overrides, the seed and the ids of the upstream runs it reads. Two rows that
need the same upstream run at the same seed share it.

A run on the source domain alone (its stage and its upstream read no target data: the source
pre-training, SPL's restorer) also has a *share key*: the same hash without the target data's
config and overrides. Tables and figure levels that differ only in their target data give
such runs the same key, and the executor copies a finished one from the share folder instead
of training it again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cloudxfer.runner.methods import Method, method, upstream_closure

__all__ = [
    "EXPERIMENTS",
    "METRICS",
    "RECORD_FILENAME",
    "PlannedRun",
    "Setting",
    "plan",
    "profile_path",
]

EXPERIMENTS = (Path(__file__).resolve().parents[1] / "experiments").resolve()
"""The configs: ``experiments/`` of the source tree (``cloudxfer/experiments`` links to it),
or the copy an installed package carries."""
TARGET_DATA = "data.yaml"
"""How a stage config that reads the target data names it (``data: data.yaml``)."""
STAGE_DATASET = "sen12ms_cloud"
"""The data set folder holding the stage configs; another data set folder holds its own
``data.yaml`` (passed as ``--data`` after the stage config) and only the stage configs it
changes."""
CHECKPOINT = Path("checkpoints") / "best.ckpt"
"""A fit's result: the weights of its lowest held-out loss (read downstream and by test)."""
RESUME = Path("checkpoints") / "last.ckpt"
"""A fit's last epoch: where an interrupted fit resumes."""
RECORD_FILENAME = "run.json"
"""What the runner records in each run folder (id, method, seed, setting, commands)."""
METRICS = Path("test") / "metrics.json"
"""The test scores ``cloudxfer test`` writes in a run folder."""


def profile_path(profile: str) -> Path:
    """Resolve a profile name (``quick``) or YAML path to the profile file."""
    path = Path(profile)
    return path if path.suffix else EXPERIMENTS / "profiles" / f"{profile}.yaml"


@dataclass(frozen=True)
class Setting:
    """What every run of one chain or table shares: profile, data set configs, overrides."""

    profile: Path
    dataset: str
    """Folder of stage configs under ``experiments/``."""
    overrides: tuple[str, ...] = ()
    """CLI overrides for every run (data roots, ``--trainer.x=y``)."""
    stage_overrides: tuple[tuple[str, str], ...] = ()
    """(method, CLI override) pairs for one method's runs only (``--stage.<method>.x=y``)."""
    run_root: Callable[[int], Path] = field(default=lambda seed: Path("runs") / f"seed{seed}")
    """Folder holding one seed's runs (one sub-folder per method)."""
    share_dir: Path | None = None
    """Folder of finished source-domain runs shared across tables (None: no sharing)."""

    def overrides_of(self, method_name: str) -> list[str]:
        """Return the CLI overrides given for ``method_name``'s runs alone."""
        return [arg for name, arg in self.stage_overrides if name == method_name]

    @property
    def dataset_dir(self) -> Path:
        """The data set's config folder (``experiments/<dataset>/``)."""
        return EXPERIMENTS / self.dataset

    def stage_config(self, m: Method) -> Path:
        """Return the method's stage config: the data set folder's own, else the shared one."""
        own = self.dataset_dir / m.config
        return own if own.is_file() else EXPERIMENTS / STAGE_DATASET / m.config

    def data_config(self) -> Path:
        """Return the data set's ``data.yaml`` (the stage configs include the shared one)."""
        return self.dataset_dir / "data.yaml"

    def data_arguments(self, m: Method) -> list[str]:
        """``--data=<data.yaml>`` where the data set is not the stage configs' own.

        Only for a method whose stage reads the target data (``data: data.yaml``): one on the
        source domain (``source_pretrain``, ``spl_pretrain``) keeps its own data config.
        """
        if self.dataset == STAGE_DATASET or not reads_target_data(self.stage_config(m)):
            return []
        return [f"--data={self.data_config()}"]


PROFILE_FIELD = re.compile(r"profile\.(\w+)")
"""A profile field interpolated by a config (``${profile.data_root}``, ``${...profile.x}``)."""


def target_only_overrides(data_text: str, stage_text: str, overrides: Sequence[str]) -> list[str]:
    """Return the overrides that reach a run only through the target data's config.

    Those are ``--data=`` and ``--profile.<field>=`` overrides of the fields the data set's
    ``data.yaml`` (``data_text``) interpolates (data root, cloudy share, cloud masks) that the
    method's stage config (``stage_text``) does not interpolate itself. A run that does not
    read the target data ignores them.
    """
    fields = set(PROFILE_FIELD.findall(data_text)) - set(PROFILE_FIELD.findall(stage_text))
    ignored = tuple(f"--profile.{name}=" for name in sorted(fields))
    return [arg for arg in overrides if arg.startswith(("--data=", *ignored))]


def _source_inputs(
    setting: Setting, m: Method, texts: dict[str, str], overrides: list[str]
) -> dict[str, object] | None:
    """Return the configs and overrides a run's share key hashes (None: it reads target data)."""
    stage = setting.stage_config(m)
    if reads_target_data(stage):
        return None
    dropped = target_only_overrides(texts[TARGET_DATA], texts[stage.name], overrides)
    return {
        "configs": {name: text for name, text in texts.items() if name != TARGET_DATA},
        "overrides": [arg for arg in overrides if arg not in dropped],
    }


def reads_target_data(stage_config: Path) -> bool:
    """Whether a stage config reads the target data set (``data: data.yaml``)."""
    config = yaml.safe_load(stage_config.read_text(encoding="utf-8")) or {}
    return isinstance(config, dict) and config.get("data") == TARGET_DATA


@dataclass(frozen=True)
class PlannedRun:
    """One run: method, seed, folder, id, the upstream runs it reads and its commands."""

    method: Method
    seed: int
    setting: Setting
    directory: Path
    run_id: str
    upstream: tuple[PlannedRun, ...]
    fit_args: tuple[str, ...]
    test_args: tuple[str, ...]
    share_key: str | None = None
    """Hash of what decides a source-domain run's training (None: it reads target data)."""

    @property
    def shared_directory(self) -> Path | None:
        """Where the share folder keeps this run's training (None: not shared)."""
        if self.share_key is None or self.setting.share_dir is None:
            return None
        return self.setting.share_dir / f"{self.method.name}-{self.share_key}"

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
        """Return what ``run.json`` records about the run."""
        return {
            "id": self.run_id,
            "method": self.method.name,
            "stage": self.method.stage,
            "seed": self.seed,
            "setting": {
                "profile": str(self.setting.profile),
                "dataset": self.setting.dataset,
                "overrides": list(self.setting.overrides),
            },
            "upstream": {run.method.name: run.run_id for run in self.upstream},
            "share_key": self.share_key,
            "fit": self.shell("fit"),
            "test": self.shell("test") if self.method.tested else None,
        }


def _digest(parts: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _config_texts(setting: Setting, m: Method) -> dict[str, str]:
    """Contents of the YAML files the run's config is made of (its stage, data, profile)."""
    files = [setting.profile, setting.stage_config(m), setting.data_config()]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"config not found: {', '.join(missing)}")
    return {p.name: p.read_text(encoding="utf-8") for p in files}


def plan(methods: Sequence[str], seeds: Sequence[int], setting: Setting) -> list[PlannedRun]:
    """Every run the methods need at every seed, upstream first, each exactly once.

    A method that is not ``per_seed`` (a pre-trained model) runs at the first seed only, and
    every seed's runs read that run.
    """
    order = upstream_closure(list(methods))
    configs = {name: _config_texts(setting, method(name)) for name in order}
    overrides = {
        name: [*setting.overrides, *method(name).overrides, *setting.overrides_of(name)]
        for name in order
    }
    source_inputs = {
        name: _source_inputs(setting, method(name), configs[name], overrides[name])
        for name in order
    }
    runs: dict[tuple[str, int], PlannedRun] = {}
    for seed in seeds:
        root = setting.run_root(seed)
        for name in order:
            m = method(name)
            if not m.per_seed and seed != seeds[0]:
                runs[(name, seed)] = runs[(name, seeds[0])]  # one pre-trained model per plan
                continue
            upstream = tuple(runs[(up, seed)] for _, up in m.needs)
            if not m.per_seed and any(run.method.per_seed for run in upstream):
                raise ValueError(f"{name} is trained once for every seed: it cannot read "
                                 "a per-seed run")  # fmt: skip
            inputs = [
                f"--{a}={run.checkpoint}" for (a, _), run in zip(m.needs, upstream, strict=True)
            ]
            directory = root / m.name
            common = [
                "--config", str(setting.profile),
                "--config", str(setting.stage_config(m)),
                *setting.data_arguments(m),
                f"--profile.run_root={root}",
                f"--profile.seed={seed}",
                *overrides[name],
                *inputs,
                f"--trainer.default_root_dir={directory}",
                # inert unless --wandb.enabled=true: one W&B group per table, runs by stage/seed
                f"--wandb.name={m.name}-seed{seed}",
                f"--wandb.group={root.parent.name}",
                f"--wandb.job_type={m.stage}",
                f"--wandb.tags=[seed{seed},{m.name}]",
            ]  # fmt: skip
            parts: dict[str, object] = {
                "method": m.name, "stage": m.stage, "seed": seed,
                "configs": configs[name],
                "overrides": overrides[name],
                "upstream": [run.run_id for run in upstream],
            }  # fmt: skip
            if setting.dataset != STAGE_DATASET and not setting.data_arguments(m):
                # such runs once read the other data set's data.yaml: a new id, not a reuse
                parts["data"] = "own"
            run_id = _digest(parts)
            share_key = None
            source = source_inputs[name]
            if source is not None and all(run.share_key for run in upstream):
                # the same hash, less what only the target data reads
                share_key = _digest({**parts, **source, "data": "source",
                                     "upstream": [run.share_key for run in upstream]})  # fmt: skip
            runs[(name, seed)] = PlannedRun(
                method=m,
                seed=seed,
                setting=setting,
                directory=directory,
                run_id=run_id,
                upstream=upstream,
                fit_args=tuple(common),
                test_args=(*common, f"--ckpt_path={directory / CHECKPOINT}"),
                share_key=share_key,
            )
    return list({run.key: run for run in runs.values()}.values())
