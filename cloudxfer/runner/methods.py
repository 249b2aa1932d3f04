"""Methods as data: each table row or upstream stage is one registry entry.

A method names its stage YAML (under ``experiments/<dataset>/``), the stage name its
checkpoints carry, the upstream methods whose checkpoints it reads (and through which init
argument), its table label and modality group. Adding a method is one LightningModule, one
YAML and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METHODS", "TABLES", "Method", "PaperRow", "method", "upstream_closure"]


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
            "tlf",
            "tlf.yaml",
            "fusion",
            needs=(("model.init_args.teacher", _F_S),),
            label="TLF (opt & SAR)",
            group="Opt & SAR",
        ),
        Method(
            "ogm_ge",
            "ogm_ge.yaml",
            "fusion",
            needs=(("model.init_args.teacher", _F_S),),
            label="OGM-GE (opt & SAR)",
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
        # ablations of F2 (one setting changed each)
        Method(
            "target_irm_sample",
            "target.yaml",
            "target",
            needs=_TEACHERS,
            overrides=("--model.init_args.irm=sample",),
            label="F2, IRM per sample",
            group="Opt & SAR",
        ),
        Method(
            "target_late",
            "target.yaml",
            "target",
            needs=_TEACHERS,
            overrides=("--model.init_args.fusion=late",),
            label="F2, late fusion",
            group="Opt & SAR",
        ),
        Method(
            "target_soft",
            "target.yaml",
            "target",
            needs=_TEACHERS,
            overrides=("--model.init_args.targets=soft",),
            label="F2, soft targets",
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


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table, with the paper's published OA (%), AA (%) and Kappa."""

    label: str
    group: str
    method: str | None
    published: tuple[float, float, float] | None = None


TABLES: dict[str, tuple[PaperRow, ...]] = {
    # Table I of the paper: NWPU-RESISC45 ("NR") -> SEN12MS Cloud; published numbers as printed
    "table1": (
        PaperRow("Finetune", "Opt", "finetune_opt", (47.04, 59.717, 0.379)),
        PaperRow("SPL", "Opt", None, (42.54, 47.17, 0.356)),
        PaperRow("KD-S", "Opt", "kd_s", (59.38, 62.38, 0.531)),
        PaperRow("Finetune", "SAR", "finetune_sar", (22.64, 22.06, 0.140)),
        PaperRow("CycIT", "SAR", None, (30.59, 28.86, 0.221)),
        PaperRow("TTL", "SAR", None, (26.84, 10.12, 0.113)),
        PaperRow("DSAN", "SAR", None, (48.52, 20.70, 0.395)),
        PaperRow("SL", "Opt & SAR", "sl", (42.54, 43.53, 0.344)),
        PaperRow("KDHN", "Opt & SAR", "kdhn", (68.60, 69.63, 0.640)),
        PaperRow("TLF", "Opt & SAR", "tlf", (69.31, 65.89, 0.654)),
        PaperRow("OGM-GE (beyond the paper)", "Opt & SAR", "ogm_ge"),
        PaperRow("Ours (F2, IRM)", "Opt & SAR", "target", (78.50, 76.64, 0.754)),
        PaperRow("Ours without IRM", "Opt & SAR", "target_noirm"),
        PaperRow("Ours, IRM per sample", "Opt & SAR", "target_irm_sample"),
        PaperRow("Ours, late fusion", "Opt & SAR", "target_late"),
        PaperRow("Ours, soft targets", "Opt & SAR", "target_soft"),
        PaperRow("F1 auxiliary (opt)", "Opt", "aux_opt"),
        PaperRow("F1 auxiliary (SAR)", "SAR", "aux_sar"),
        PaperRow("Source f_S", "Opt", "source_finetune"),
    ),
}
"""The paper's tables as rows in its order and groups; a row with no method prints "not run"."""
