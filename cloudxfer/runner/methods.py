"""The method registry, read from ``experiments/methods/<name>.yaml`` and ``experiments/tables``.

A method is one LightningModule and one YAML. The YAML is a LightningCLI config whose
``method:`` block (its *card*, parsed by ``cloudxfer fit`` and ignored there) says what the
runner needs: its table labels and group, the upstream methods whose result checkpoints it
reads and which constructor argument each feeds, whether it is trained once per table, which
data it reads, and the method it extends (an ablation is its base YAML plus a few lines). The
file name is the method's name everywhere: run folder, registry key, table key. A paper table
(``experiments/tables/<table>.yaml``) lists its rows by method name, its data set and source
role, and the paper's published numbers.

Reading the registry parses YAML only: no torch, no Lightning (``cloudxfer run --help`` stays
fast). The stage a method's checkpoints carry comes from its class, imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cloudxfer.profile import MethodCard

__all__ = [
    "EXPERIMENTS",
    "METHODS",
    "TABLES",
    "TABLE_SETTINGS",
    "Method",
    "MethodCard",
    "PaperRow",
    "load_method",
    "method",
    "register",
    "upstream_closure",
]

EXPERIMENTS = (Path(__file__).resolve().parents[1] / "experiments").resolve()
"""The configs: ``experiments/`` of the source tree (``cloudxfer/experiments`` links to it),
or the copy an installed package carries."""
METHODS_DIR = EXPERIMENTS / "methods"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it (ten times faster), else the pure-Python one."""
TABLES_DIR = EXPERIMENTS / "tables"


@dataclass(frozen=True)
class Method:
    """One runnable method: its config files, inputs from upstream runs and its table row."""

    name: str
    """Registry key, YAML file name and run-folder name."""
    configs: tuple[Path, ...]
    """Its YAML after those of the methods it extends (base first)."""
    needs: tuple[tuple[str, str], ...] = ()
    """(init argument of the model, upstream method) pairs: the argument gets that run's
    ``best.ckpt``."""
    label: str = ""
    row: str = ""
    group: str = ""
    per_seed: bool = True
    reads: str = "target"
    card: MethodCard = field(default_factory=MethodCard)
    """Its card, over the card of the method it extends."""

    @property
    def tested(self) -> bool:
        """Whether the method is scored on the target test split (it has a table row)."""
        return bool(self.label)

    @property
    def stage(self) -> str:
        """The stage name its checkpoints carry (from its class; checked before reuse)."""
        return _stage_of(self.configs)

    def merged_config(self) -> dict[str, Any]:
        """Return its YAML files merged (base first): what its configs set themselves."""
        merged: dict[str, Any] = {}
        for path in self.configs:
            _merge(merged, _read_yaml(path))
        return merged


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Merge ``other`` into ``into`` key by key (mappings recursively), as configs layer."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the method config ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a method config is a mapping with a `method:` block")
    return config


def _merged_model(configs: tuple[Path, ...]) -> tuple[str, dict[str, Any]]:
    """Return the model's class path and init arguments after every config in ``configs``."""
    class_path, init_args = "", dict[str, Any]()
    for path in configs:
        model = _read_yaml(path).get("model") or {}
        class_path = model.get("class_path", class_path)
        init_args.update(model.get("init_args") or {})
    return class_path, init_args


@cache
def _stage_of(configs: tuple[Path, ...]) -> str:
    class_path, init_args = _merged_model(configs)
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return str(cls.expected_metadata(init_args)[0])


def load_method(path: Path, registry: Mapping[str, Method] | None = None) -> Method:
    """Build the method of one YAML file (its name is the file's stem).

    ``registry`` resolves ``extends``: the base method must be registered first.
    """
    own = _read_yaml(path).get("method")
    if not isinstance(own, dict):
        raise ValueError(f"{path}: no `method:` block (the method's card)")
    configs: tuple[Path, ...] = (path,)
    fields = dict(own)
    extends = own.get("extends")
    if extends:
        base = (registry or {}).get(extends)
        if base is None:
            raise ValueError(f"{path}: extends {extends!r}, which is not registered")
        configs = (*base.configs, path)
        fields = {**vars(base.card), **own}  # as its configs layer: its own card over the base's
    try:
        card = MethodCard(**fields)
    except TypeError as err:
        raise ValueError(f"{path}: bad `method:` block ({err})") from None
    return Method(
        name=path.stem,
        configs=configs,
        needs=tuple(card.needs.items()),
        label=card.label,
        row=card.row or card.label,
        group=card.group,
        per_seed=card.per_seed,
        reads=card.reads,
        card=card,
    )


def register(folder: Path, registry: dict[str, Method]) -> dict[str, Method]:
    """Add every method YAML of ``folder`` to ``registry`` and return it.

    A base method is registered before the methods extending it.
    """
    pending = sorted(folder.glob("*.yaml"))
    while pending:
        progressed = False
        for path in list(pending):
            extends = (_read_yaml(path).get("method") or {}).get("extends")
            if extends and extends not in registry:
                continue
            registry[path.stem] = load_method(path, registry)
            pending.remove(path)
            progressed = True
        if not progressed:
            names = ", ".join(p.stem for p in pending)
            raise ValueError(f"{folder}: methods extend unregistered methods: {names}")
    return registry


METHODS: dict[str, Method] = register(METHODS_DIR, {})
"""Every method the runner knows (``experiments/methods``), by name."""


def method(name: str) -> Method:
    """Return the registered method ``name``; the error lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def upstream_closure(
    names: list[str], needs: Callable[[str], Iterable[str]] | None = None
) -> list[str]:
    """Return ``names`` and everything they need, upstream first (a topological order).

    ``needs``: a method's upstream methods (default: its card's ``needs``; the planner adds
    the pre-training the profile's ``init`` starts it from).
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"methods depend on each other in a cycle through {name!r}")
        visiting.add(name)
        for upstream in needs(name) if needs else [up for _, up in method(name).needs]:
            visit(upstream)
        visiting.discard(name)
        order.append(name)

    for name in names:
        visit(name)
    return order


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table, with the paper's published OA (%), AA (%) and Kappa."""

    label: str
    group: str
    method: str | None
    published: tuple[float, float, float] | None = None


def _table(path: Path) -> tuple[tuple[PaperRow, ...], tuple[str, str]]:
    spec = _read_yaml(path)
    published = spec.get("published") or {}
    rows = []
    for name in spec["rows"]:
        m = method(name)
        numbers = published.get(name)
        rows.append(PaperRow(m.row, m.group, name, tuple(numbers) if numbers else None))
    return tuple(rows), (str(spec["dataset"]), str(spec["source_role"]))


_TABLES = {path.stem: _table(path) for path in sorted(TABLES_DIR.glob("*.yaml"))}
TABLES: dict[str, tuple[PaperRow, ...]] = {name: rows for name, (rows, _) in _TABLES.items()}
"""The paper's tables: Table I (NWPU role -> SEN12MS Cloud), Table II (AID role -> SEN12MS
Cloud), Table III (NWPU role -> Hunan Cloud), Table IV (AID role -> Hunan Cloud)."""
TABLE_SETTINGS: dict[str, tuple[str, str]] = {name: s for name, (_, s) in _TABLES.items()}
"""Each table's target data set (``experiments/data/<name>.yaml``) and source role."""


def _table_order() -> list[str]:
    """Every method, upstream first, in the order the tables list their rows (then the rest)."""
    rows = [row for table in TABLES.values() for row in table if row.method]
    # f_S (the Source group) first: every other row reads it
    listed = [str(row.method) for row in sorted(rows, key=lambda row: row.group != "Source")]
    return upstream_closure(list(dict.fromkeys([*listed, *METHODS])))


_ordered = {name: METHODS[name] for name in _table_order()}
METHODS.clear()
METHODS.update(_ordered)  # figures and listings show methods in the tables' order
