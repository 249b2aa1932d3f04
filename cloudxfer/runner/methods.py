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
    ``best.ckpt``."""
    overrides: tuple[str, ...] = ()
    """CLI overrides that make this method out of its stage config (e.g. ``irm: none``)."""
    label: str = ""
    """Row label in result tables (empty: an upstream stage, not a row)."""
    group: str = ""
    """Modality group of the row: ``Opt``, ``SAR``, ``Opt & SAR`` or ``Source``."""
    per_seed: bool = True
    """False for a pre-trained model the paper takes as given (f_pre, SPL's restorer, CycIT's
    translator): trained once, at a table's first seed, and read by every seed's runs; each
    seed varies what is trained from it (README, "Running methods over seeds")."""

    @property
    def tested(self) -> bool:
        """Whether the method is scored on the target test split (it has a table row)."""
        return bool(self.label)


_F_S = "source_finetune"
_F_PRE = (("model.init_args.init_from", "source_pretrain"),)
_TEACHER = (("model.init_args.teacher", _F_S),)
_FROM_F_S = (("model.init_args.init_from", _F_S),)
_SPL_NEEDS = (
    ("model.init_args.restorer_from", "spl_pretrain"),
    ("model.init_args.classifier", _F_S),
)
_CLEAR_TWINS = ("--data.init_args.clear_twins=true",)
"""SPL's and CycIT's data: the clear twins of the labelled (adaptation) and test (PSNR/SSIM)
tiles; after ``--data=<data set's data.yaml>`` on the command line, so every data set gets it."""
_CYCIT_DATA = (*_CLEAR_TWINS, "--data.init_args.batch_size=8")
"""CycIT's adaptation data: clear twins, in batches of 8 pairs (CycleGAN trains on batches of
one): 25 generator steps an epoch over the 200 labelled pairs instead of 7; with lr 1e-3 the
quick Table I's three seeds reached their plateau by epoch 89 of 150 (docs/baselines.md)."""
_CYCIT_NEEDS = (
    ("model.init_args.translator_from", "cycit_pretrain"),
    ("model.init_args.classifier", _F_S),
)
_SOURCE_STREAM = ("--data.init_args.source_stream=${...profile.source_root}",)
"""CycIT's pre-training data: the source images beside the target tiles (the profile's
``source_root``, interpolated relative to ``data.init_args``, as ``data.yaml`` does)."""
_TEACHERS = (
    ("model.init_args.teacher_opt", "aux_opt"),
    ("model.init_args.teacher_sar", "aux_sar"),
    ("model.init_args.teacher_source", _F_S),
)


def _row(
    name: str, stage: str, needs: tuple[tuple[str, str], ...], label: str, group: str
) -> Method:
    """Return the method whose stage config is ``<name>.yaml``."""
    return Method(name, f"{name}.yaml", stage, needs, (), label, group)


def _f2(name: str, label: str, *overrides: str) -> Method:
    """F2 (target.yaml) with one setting changed: the method's ablations."""
    return Method(name, "target.yaml", "target", _TEACHERS, overrides, label, "Opt & SAR")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("source_pretrain", "source_pretrain.yaml", "source_pretrain", per_seed=False),
        _row(_F_S, _F_S, _F_PRE, "Source f_S (opt)", "Source"),
        # comparison rows (docs/baselines.md)
        _row("finetune_opt", _F_S, _F_PRE, "Finetune (opt)", "Opt"),
        Method("spl_pretrain", "spl_pretrain.yaml", "spl_pretrain", per_seed=False),
        Method("spl", "spl.yaml", "spl", _SPL_NEEDS, _CLEAR_TWINS, "SPL (opt)", "Opt"),
        _row("kd_s", "auxiliary", _TEACHER, "KD-S (opt)", "Opt"),
        _row("finetune_sar", _F_S, _F_PRE, "Finetune (SAR)", "SAR"),
        Method(
            "cycit_pretrain",
            "cycit_pretrain.yaml",
            "cycit_pretrain",
            (),
            _SOURCE_STREAM,
            per_seed=False,
        ),
        Method("cycit", "cycit.yaml", "cycit", _CYCIT_NEEDS, _CYCIT_DATA, "CycIT (SAR)", "SAR"),
        _row("ttl", "ttl", _FROM_F_S, "TTL (SAR)", "SAR"),
        _row("dsan", "dsan", _FROM_F_S, "DSAN (SAR)", "SAR"),
        _row("sl", "supervised", (), "SL (opt & SAR)", "Opt & SAR"),
        _row("kdhn", "auxiliary", _TEACHER, "KDHN (opt & SAR)", "Opt & SAR"),
        _row("tlf", "fusion", _TEACHER, "TLF (opt & SAR)", "Opt & SAR"),
        _row("ogm_ge", "fusion", _TEACHER, "OGM-GE (opt & SAR)", "Opt & SAR"),
        # the method: F1 auxiliaries, F2 and its ablations
        _row("aux_opt", "auxiliary", _TEACHER, "F1 auxiliary (opt)", "Opt"),
        _row("aux_sar", "auxiliary", _TEACHER, "F1 auxiliary (SAR)", "SAR"),
        _f2("target", "F2 target, IRM (opt & SAR)"),
        _f2("target_noirm", "F2 target, no IRM (opt & SAR)", "--model.init_args.irm=none"),
        _f2("target_irm_sample", "F2, IRM per sample", "--model.init_args.irm=sample"),
        _f2("target_late", "F2, late fusion", "--model.init_args.fusion=late"),
        _f2("target_soft", "F2, soft targets", "--model.init_args.targets=soft"),
        _f2(
            "target_irm_source", "F2, IRM on f_S's class", "--model.init_args.irm_reference=source"
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


_ROWS: tuple[tuple[str, str, str | None], ...] = (
    ("Finetune", "Opt", "finetune_opt"),
    ("SPL", "Opt", "spl"),
    ("KD-S", "Opt", "kd_s"),
    ("Finetune", "SAR", "finetune_sar"),
    ("CycIT", "SAR", "cycit"),
    ("TTL", "SAR", "ttl"),
    ("DSAN", "SAR", "dsan"),
    ("SL", "Opt & SAR", "sl"),
    ("KDHN", "Opt & SAR", "kdhn"),
    ("TLF", "Opt & SAR", "tlf"),
    ("OGM-GE (beyond the paper)", "Opt & SAR", "ogm_ge"),
    ("Ours (F2, IRM)", "Opt & SAR", "target"),
    ("Ours without IRM", "Opt & SAR", "target_noirm"),
    ("Ours, IRM per sample", "Opt & SAR", "target_irm_sample"),
    ("Ours, late fusion", "Opt & SAR", "target_late"),
    ("Ours, soft targets", "Opt & SAR", "target_soft"),
    ("Ours, IRM on f_S's class (Fig. 4 arrow)", "Opt & SAR", "target_irm_source"),
    ("F1 auxiliary (opt)", "Opt", "aux_opt"),
    ("F1 auxiliary (SAR)", "SAR", "aux_sar"),
    ("Source f_S", "Opt", "source_finetune"),
)
"""Every table's rows in the paper's order and groups (ours and diagnostics after its rows)."""

# The paper's published (OA %, AA %, Kappa) as printed in its Tables I and II, keyed by the
# row's method (its label where no method is registered yet).
_PUBLISHED: dict[str, dict[str, tuple[float, float, float]]] = {
    "table1": {
        "finetune_opt": (47.04, 59.717, 0.379), "spl": (42.54, 47.17, 0.356),
        "kd_s": (59.38, 62.38, 0.531), "finetune_sar": (22.64, 22.06, 0.140),
        "cycit": (30.59, 28.86, 0.221), "ttl": (26.84, 10.12, 0.113),
        "dsan": (48.52, 20.70, 0.395), "sl": (42.54, 43.53, 0.344),
        "kdhn": (68.60, 69.63, 0.640), "tlf": (69.31, 65.89, 0.654),
        "target": (78.50, 76.64, 0.754),
    },
    "table2": {
        "finetune_opt": (55.06, 53.87, 0.483), "spl": (55.34, 62.11, 0.482),
        "kd_s": (55.27, 61.95, 0.481), "finetune_sar": (19.62, 20.12, 0.103),
        "cycit": (17.52, 16.59, 0.124), "ttl": (23.84, 10.90, 0.094),
        "dsan": (41.80, 40.06, 0.308), "sl": (42.54, 43.53, 0.344),
        "kdhn": (63.02, 65.39, 0.574), "tlf": (62.92, 59.60, 0.583),
        "target": (75.17, 75.83, 0.716),
    },
    "table3": {
        "finetune_opt": (36.67, 33.25, 0.285), "spl": (22.62, 26.02, 0.139),
        "kd_s": (42.73, 38.90, 0.343), "finetune_sar": (46.32, 34.61, 0.372),
        "cycit": (21.44, 21.07, 0.123), "ttl": (13.69, 12.06, 0.120),
        "dsan": (60.46, 49.34, 0.525), "sl": (40.62, 34.35, 0.313),
        "kdhn": (44.57, 38.38, 0.361), "tlf": (52.69, 49.68, 0.431),
        "target": (68.00, 55.08, 0.623),
    },
    # Table IV's Finetune (SAR) AA reads "3591" in the paper's text: 35.91 %.
    "table4": {
        "finetune_opt": (36.27, 33.55, 0.284), "spl": (23.65, 27.80, 0.161),
        "kd_s": (40.35, 35.26, 0.317), "finetune_sar": (44.70, 35.91, 0.362),
        "cycit": (19.50, 21.13, 0.119), "ttl": (12.21, 14.22, 0.134),
        "dsan": (60.68, 46.41, 0.526), "sl": (40.62, 34.35, 0.313),
        "kdhn": (40.57, 35.64, 0.321), "tlf": (42.73, 40.60, 0.353),
        "target": (65.08, 49.57, 0.583),
    },
}  # fmt: skip


def _table(name: str) -> tuple[PaperRow, ...]:
    published = _PUBLISHED[name]
    return tuple(
        PaperRow(label, group, registered, published.get(registered or label))
        for label, group, registered in _ROWS
    )


TABLES: dict[str, tuple[PaperRow, ...]] = {name: _table(name) for name in _PUBLISHED}
"""The paper's tables: Table I (NWPU role -> SEN12MS Cloud), Table II (AID role -> SEN12MS
Cloud), Table III (NWPU role -> Hunan Cloud), Table IV (AID role -> Hunan Cloud); a row with
no method prints "not run"."""
TABLE_SETTINGS: dict[str, tuple[str, str]] = {
    "table1": ("sen12ms_cloud", "nwpu"),
    "table2": ("sen12ms_cloud", "aid"),
    "table3": ("cloudy_pairs", "nwpu"),
    "table4": ("cloudy_pairs", "aid"),
}
"""Each table's target data set folder and source role."""
