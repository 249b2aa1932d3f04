"""Methods as data: each table row or upstream stage is one registry entry.

A method names its stage YAML (under ``experiments/<dataset>/``), the stage name its
checkpoints carry, the upstream methods whose checkpoints it reads (and through which init
argument), its table label and modality group. Adding a method is one LightningModule, one
YAML and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METHODS", "Method", "method", "upstream_closure"]


@dataclass(frozen=True)
class Method:
    """One runnable method: a stage config, its inputs from upstream runs and its table row."""

    name: str
    """Registry key and run-folder name."""
    config: str
    """Stage YAML under ``experiments/<dataset>/``."""
    stage: str
    """Stage name its checkpoints must carry (checked before a finished run is reused)."""
    needs: tuple[tuple[str, str], ...] = ()
    """(init argument of the model, upstream method) pairs: the argument gets that run's
    ``last.ckpt``."""
    overrides: tuple[str, ...] = ()
    """CLI overrides that make this method out of its stage config (e.g. ``irm: none``)."""
    label: str = ""
    """Row label in result tables (empty: an upstream stage, not a row)."""
    group: str = ""
    """Modality group of the row: ``Opt``, ``SAR``, ``Opt & SAR`` or ``Source``."""

    @property
    def tested(self) -> bool:
        """Whether the method is scored on the target test split (it has a table row)."""
        return bool(self.label)


_F_S = "source_finetune"
_TEACHERS = (
    ("model.init_args.teacher_opt", "aux_opt"),
    ("model.init_args.teacher_sar", "aux_sar"),
    ("model.init_args.teacher_source", _F_S),
)

_F_PRE = (("model.init_args.init_from", "source_pretrain"),)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("source_pretrain", "source_pretrain.yaml", "source_pretrain"),
        Method(
            _F_S,
            "source_finetune.yaml",
            "source_finetune",
            needs=_F_PRE,
            label="Source f_S (opt)",
            group="Source",
        ),
        # comparison rows (docs/baselines.md)
        Method(
            "finetune_opt",
            "finetune_opt.yaml",
            "source_finetune",
            needs=_F_PRE,
            label="Finetune (opt)",
            group="Opt",
        ),
        Method(
            "kd_s",
            "kd_s.yaml",
            "auxiliary",
            needs=(("model.init_args.teacher", _F_S),),
            label="KD-S (opt)",
            group="Opt",
        ),
        Method(
            "finetune_sar",
            "finetune_sar.yaml",
            "source_finetune",
            needs=_F_PRE,
            label="Finetune (SAR)",
            group="SAR",
        ),
        Method("sl", "sl.yaml", "supervised", label="SL (opt & SAR)", group="Opt & SAR"),
        Method(
            "kdhn",
            "kdhn.yaml",
            "auxiliary",
            needs=(("model.init_args.teacher", _F_S),),
            label="KDHN (opt & SAR)",
            group="Opt & SAR",
        ),
        Method(
            "aux_opt",
            "aux_opt.yaml",
            "auxiliary",
            needs=(("model.init_args.teacher", _F_S),),
            label="F1 auxiliary (opt)",
            group="Opt",
        ),
        Method(
            "aux_sar",
            "aux_sar.yaml",
            "auxiliary",
            needs=(("model.init_args.teacher", _F_S),),
            label="F1 auxiliary (SAR)",
            group="SAR",
        ),
        Method(
            "target",
            "target.yaml",
            "target",
            needs=_TEACHERS,
            label="F2 target, IRM (opt & SAR)",
            group="Opt & SAR",
        ),
        Method(
            "target_noirm",
            "target.yaml",
            "target",
            needs=_TEACHERS,
            overrides=("--model.init_args.irm=none",),
            label="F2 target, no IRM (opt & SAR)",
            group="Opt & SAR",
        ),
    )
}
"""Every method the runner knows, in table order."""


def method(name: str) -> Method:
    """Return the registered method ``name``; the error lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def upstream_closure(names: list[str]) -> list[str]:
    """Return ``names`` and everything they need, upstream first (a topological order)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"methods depend on each other in a cycle through {name!r}")
        visiting.add(name)
        for _, upstream in method(name).needs:
            visit(upstream)
        visiting.discard(name)
        order.append(name)

    for name in names:
        visit(name)
    return order
