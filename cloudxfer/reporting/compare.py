"""Paired comparisons of runs on the same test tiles: ``cloudxfer compare`` and table sections.

Two classifiers scored on the same test tiles are compared seed by seed and tile by tile:

- per seed, the OA difference (first minus second, in points) and the exact McNemar test of
  the paired per-tile correctness (which tiles only one of the two got right);
- over seeds, the Student t-interval and t-test of the mean difference (few seeds: wide);
- overall, on cloudy and on clear tiles alike (cloudy: cloud fraction above the threshold,
  0 as in the test metrics; tiles without a cloud fraction are in neither subset);
- Holm's adjustment across every line of one list, and a verdict sentence generated from the
  numbers (:func:`cloudxfer.reporting.statistics.verdict`).

A table's list (:data:`TABLE_PAIRS`) holds the pairs a reader of the paper's claim asks
about; ``cloudxfer compare`` compares any runs. Tiles are paired by id from each run's
``test/predictions.csv``; two runs on different tiles are refused.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cloudxfer.reporting.report import read_record
from cloudxfer.reporting.statistics import (
    PairedEvidence,
    TInterval,
    holm,
    mcnemar_exact,
    p_text,
    paired_t,
    t_quantile,
    verdict,
)
from cloudxfer.runner.methods import METHODS
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME
from datamodules.runfiles import atomic_write_text

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "TABLE_PAIRS",
    "Arm",
    "Pair",
    "Result",
    "TileCounts",
    "Tiles",
    "evaluate",
    "format_section",
    "main",
    "paired_counts",
    "read_tiles",
    "table_pairs",
    "table_section",
]

PREDICTIONS = METRICS.parent / "predictions.csv"
"""A tested run's per-tile predictions (id, label, pred, cloud_fraction, ...)."""
SUBSETS: tuple[tuple[str, str, str], ...] = (
    ("all", "OA", "n"),
    ("cloudy", "OA on cloudy tiles", "n_cloudy"),
    ("clear", "OA on clear tiles", "n_clear"),
)
"""(subset, what its verdict calls it, its tile count in ``metrics.json``)."""

F2 = "target"
BEST_BASELINE = "best baseline"
"""Stands for the baseline row of highest mean OA in :data:`TABLE_PAIRS`."""
BASELINES: tuple[str, ...] = (
    "finetune_opt", "spl", "kd_s", "finetune_sar", "cycit", "ttl", "dsan", "sl", "kdhn", "tlf",
    "ogm_ge",
)  # fmt: skip
"""The comparison rows (docs/baselines.md) the best baseline is chosen among."""
ABLATIONS: tuple[str, ...] = (
    "target_irm_sample", "target_late", "target_soft", "target_irm_source"
)  # fmt: skip
"""F2 with one setting changed."""
TABLE_PAIRS: tuple[tuple[str, str, str], ...] = (
    (F2, "source_finetune", "F2 vs f_S: does the transfer beat the source classifier"),
    (F2, "target_noirm", "F2 with vs without IRM"),
    (F2, BEST_BASELINE, "F2 vs the best baseline"),
    *((name, F2, "ablation vs F2") for name in ABLATIONS),
)
"""(first method, second method, why a reader asks) of a table's comparison section."""


@dataclass(frozen=True)
class Tiles:
    """One run's labelled test tiles: label, whether it was right, cloudy / clear / neither."""

    path: Path
    labels: dict[str, int]
    correct: dict[str, bool]
    subset: dict[str, str | None]


def _check_counts(run: Path, path: Path, tiles: Tiles) -> None:
    """Refuse predictions whose cloudy / clear split differs from the run's test metrics."""
    metrics = read_record(run / METRICS)
    if metrics is None:
        return
    for name, _, key in SUBSETS:
        count = sum(1 for s in tiles.subset.values() if name == "all" or s == name)
        expected = metrics.get(key)
        if isinstance(expected, int) and expected != count:
            raise ValueError(
                f"{path}: {count} {name} labelled tiles, but {run / METRICS} counts {expected}; "
                "was the run tested with another cloudy threshold (--cloudy-threshold)?"
            )


def read_tiles(run: Path, cloudy_threshold: float = 0.0) -> Tiles:
    """Read a tested run's ``test/predictions.csv`` (labelled tiles only).

    Raises:
        ValueError: The file is missing or malformed, lists a tile twice, or splits the tiles
            into cloudy and clear otherwise than the run's ``metrics.json``.

    """
    path = run / PREDICTIONS
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [
                (r["id"], int(r["label"]), int(r["pred"]), float(r["cloud_fraction"] or "nan"))
                for r in csv.DictReader(handle)
            ]
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the run's per-tile predictions ({err})") from None
    labels: dict[str, int] = {}
    correct: dict[str, bool] = {}
    subset: dict[str, str | None] = {}
    for tile, label, pred, fraction in rows:
        if label < 0:  # an unlabelled tile is not scored
            continue
        if tile in labels:
            raise ValueError(f"{path}: tile {tile} is listed twice")
        labels[tile], correct[tile] = label, pred == label
        cloudy = fraction > cloudy_threshold
        subset[tile] = None if math.isnan(fraction) else ("cloudy" if cloudy else "clear")
    tiles = Tiles(path, labels, correct, subset)
    _check_counts(run, path, tiles)
    return tiles


@dataclass(frozen=True)
class TileCounts:
    """Two runs' paired correctness on one subset of the test tiles."""

    n: int
    a_correct: int
    b_correct: int
    a_only: int
    """Tiles only the first run got right."""
    b_only: int
    """Tiles only the second run got right."""

    @property
    def delta(self) -> float:
        """OA of the first minus OA of the second, in percentage points."""
        return 100.0 * (self.a_correct - self.b_correct) / self.n

    @property
    def p(self) -> float:
        """The exact two-sided McNemar p of the discordant tiles."""
        return mcnemar_exact(self.a_only, self.b_only)


def _examples(ids: Sequence[str]) -> str:
    return "" if not ids else ", e.g. " + ", ".join(ids[:3])


def paired_counts(a: Tiles, b: Tiles) -> dict[str, TileCounts]:
    """Pair two runs' tiles by id; return their counts overall, on cloudy and on clear tiles.

    Raises:
        ValueError: The runs hold different tiles, or disagree on a tile's label or cover;
            the message names both files.

    """
    if a.labels.keys() != b.labels.keys():
        only_a = sorted(a.labels.keys() - b.labels.keys())
        only_b = sorted(b.labels.keys() - a.labels.keys())
        raise ValueError(
            f"{a.path} and {b.path} hold different labelled test tiles ({len(only_a)} only in "
            f"the first{_examples(only_a)}; {len(only_b)} only in the second"
            f"{_examples(only_b)}): a paired comparison needs the same tiles"
        )
    differ = sorted(t for t in a.labels if (a.labels[t], a.subset[t]) != (b.labels[t], b.subset[t]))
    if differ:
        raise ValueError(
            f"{a.path} and {b.path} disagree on the label or cloud cover of {len(differ)} "
            f"tiles{_examples(differ)}: not the same test tiles"
        )
    counts = {}
    for name, _, _ in SUBSETS:
        ids = [t for t in a.labels if name == "all" or a.subset[t] == name]
        counts[name] = TileCounts(
            n=len(ids),
            a_correct=sum(a.correct[t] for t in ids),
            b_correct=sum(b.correct[t] for t in ids),
            a_only=sum(a.correct[t] and not b.correct[t] for t in ids),
            b_only=sum(b.correct[t] and not a.correct[t] for t in ids),
        )
    return counts


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: a name and its run folder per seed (or per position)."""

    name: str
    runs: dict[int, Path]


@dataclass(frozen=True)
class Pair:
    """Two arms to compare, first minus second, and why a reader asks."""

    a: Arm
    b: Arm
    why: str = ""


@dataclass(frozen=True)
class Result:
    """One comparison on one subset of the tiles, with Holm-adjusted p-values."""

    pair: Pair
    subset: str
    seeds: tuple[int, ...]
    counts: tuple[TileCounts, ...]
    """Per seed, in ``seeds`` order."""
    interval: TInterval
    seed_p: float | None = None
    """Holm-adjusted t-test p over seeds (None: fewer than two seeds, or equal differences)."""
    tile_p: float | None = None
    """Holm-adjusted largest per-seed McNemar p."""

    @property
    def deltas(self) -> tuple[float, ...]:
        """Per seed, OA of the first minus the second, in points."""
        return tuple(c.delta for c in self.counts)

    @property
    def evidence(self) -> PairedEvidence:
        """What the verdict rests on."""
        return PairedEvidence(self.deltas, self.interval, self.seed_p, self.tile_p)

    @property
    def what(self) -> str:
        """The measure and tiles in words (``OA on cloudy tiles``)."""
        return next(what for name, what, _ in SUBSETS if name == self.subset)


@dataclass
class Comparisons:
    """A list's results (Holm-adjusted across all of them) and the pairs it could not do."""

    results: list[Result]
    problems: list[tuple[Pair, str]] = field(default_factory=list)


def _pair_results(pair: Pair, cache: dict[Path, Tiles], threshold: float) -> list[Result]:
    """Unadjusted results of one pair on every subset with tiles at all its seeds."""
    seeds = tuple(sorted(pair.a.runs.keys() & pair.b.runs.keys()))
    if not seeds:
        raise ValueError(f"{pair.a.name} and {pair.b.name} share no seed")

    def tiles(run: Path) -> Tiles:
        if run not in cache:
            cache[run] = read_tiles(run, threshold)
        return cache[run]

    per_seed = [paired_counts(tiles(pair.a.runs[s]), tiles(pair.b.runs[s])) for s in seeds]
    results = []
    for name, _, _ in SUBSETS:
        counts = tuple(c[name] for c in per_seed)
        if any(c.n == 0 for c in counts):
            continue  # e.g. no clear tile in a fully clouded test set
        interval = paired_t([c.delta for c in counts])
        results.append(Result(pair, name, seeds, counts, interval))
    return results


def evaluate(
    pairs: Sequence[Pair], cloudy_threshold: float = 0.0, strict: bool = True
) -> Comparisons:
    """Compare every pair on every subset; Holm-adjust across all the results.

    Two families are adjusted, each across every result: the tile tests (per result, the
    largest per-seed McNemar p, since a difference must hold at every seed) and the t-tests
    over seeds.

    Raises:
        ValueError: With ``strict``, a pair cannot be compared (different tiles, unreadable
            predictions, no common seed); without, such pairs are listed as problems.

    """
    cache: dict[Path, Tiles] = {}
    raw: list[Result] = []
    problems: list[tuple[Pair, str]] = []
    for pair in pairs:
        try:
            raw += _pair_results(pair, cache, cloudy_threshold)
        except ValueError as err:
            if strict:
                raise
            problems.append((pair, str(err)))
    tile_adjusted = holm([max(c.p for c in r.counts) for r in raw])
    with_seed_p = [i for i, r in enumerate(raw) if r.interval.p is not None]
    seed_adjusted = dict(
        zip(with_seed_p, holm([raw[i].interval.p or 0.0 for i in with_seed_p]), strict=True)
    )
    results = [
        Result(r.pair, r.subset, r.seeds, r.counts, r.interval, seed_adjusted.get(i), tile_p)
        for i, (r, tile_p) in enumerate(zip(raw, tile_adjusted, strict=True))
    ]
    return Comparisons(results, problems)


def _p(p: float | None) -> str:
    return "n/a" if p is None else p_text(p)


def _signed(values: Sequence[float]) -> str:
    return " / ".join(f"{v:+.2f}" for v in values)


def format_section(comparisons: Comparisons, alpha: float = 0.05, preamble: str = "") -> str:
    """Markdown: how to read it, one table line per result, then one verdict per result."""
    results = comparisons.results
    lines = ["### Paired comparisons (OA)", ""]
    if preamble:
        lines += [preamble, ""]
    sizes = sorted({r.interval.n for r in results if r.interval.t_crit is not None})
    widths = "; ".join(
        f"with {n} seeds its half-width is {t_quantile(0.975, n - 1):.2f} standard errors"
        for n in sizes
    )
    lines.append(
        "Each line compares two classifiers on the same test tiles, seed by seed. Δ: OA of the "
        "first minus OA of the second, in points, per seed. 95 % t-interval: of the mean Δ over "
        "the seeds (Student t, seeds - 1 degrees of freedom"
        + (f": {widths}, so with few seeds it is wide" if widths else "")
        + "). McNemar: the exact two-sided test of the paired per-tile correctness at each "
        "seed, from the tiles only the first / only the second got right; tiles p: the largest "
        "per-seed p (a difference must hold at every seed). Both p columns are Holm-adjusted "
        f"across the {len(results)} lines here; the verdicts (alpha {alpha:g}) are generated "
        "from these numbers."
    )
    if not results:
        lines += ["", "Nothing to compare: none of the pairs below has both of its rows run."]
    else:
        lines += [
            "",
            "| first | second | tiles | seeds | Δ per seed | mean Δ | 95 % t-interval "
            "| seeds p (Holm) | only first / only second right | McNemar p per seed "
            "| tiles p (Holm) |",
            "|" + "---|" * 11,
        ]
        for r in results:
            interval = r.interval
            bounds = (
                "n/a (one seed)" if interval.low is None or interval.high is None
                else f"[{interval.low:+.2f}, {interval.high:+.2f}]"
            )  # fmt: skip
            cells = [
                r.pair.a.name, r.pair.b.name, f"{r.subset} ({r.counts[0].n})",
                " ".join(map(str, r.seeds)), _signed(r.deltas), f"{interval.mean:+.2f}", bounds,
                _p(r.seed_p), ", ".join(f"{c.a_only}/{c.b_only}" for c in r.counts),
                ", ".join(_p(c.p) for c in r.counts), _p(r.tile_p),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Verdicts:", ""]
        for r in results:
            why = f"{r.pair.why}, " if r.pair.why else ""
            sentence = verdict(r.pair.a.name, r.pair.b.name, r.what, r.evidence, alpha)
            lines.append(f"- {why}{r.subset} tiles: {sentence}")
    for pair, problem in comparisons.problems:
        lines.append(f"- {pair.a.name} vs {pair.b.name}: not compared: {problem}")
    return "\n".join(lines)


def _runs_by_method(run_dirs: Sequence[Path]) -> dict[str, dict[int, Path]]:
    """Group tested run folders by their records' method and seed."""
    by_method: dict[str, dict[int, Path]] = {}
    for run in run_dirs:
        record = read_record(run / RECORD_FILENAME)
        if record is None or "method" not in record or "seed" not in record:
            raise ValueError(f"{run / RECORD_FILENAME}: no run record with a method and seed")
        by_method.setdefault(str(record["method"]), {})[int(record["seed"])] = run
    return by_method


def _label(name: str) -> str:
    m = METHODS.get(name)
    return m.label if m is not None and m.label else name


def _mean_oa(runs: dict[int, Path]) -> float | None:
    values = [(read_record(run / METRICS) or {}).get("oa") for run in runs.values()]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None


def table_pairs(run_dirs: Sequence[Path]) -> tuple[list[Pair], list[str]]:
    """Return a table's pairs among the methods run, and the pairs not run (in words).

    The best baseline is the baseline row (:data:`BASELINES`) of highest mean test OA: chosen
    on the same test tiles it is then compared on, which favours the baseline.
    """
    by_method = _runs_by_method(run_dirs)
    scored = [(oa, name) for name in BASELINES if name in by_method
              for oa in [_mean_oa(by_method[name])] if oa is not None]  # fmt: skip
    best = max(scored)[1] if scored else None
    pairs, missing = [], []
    for first, second, why in TABLE_PAIRS:
        if second == BEST_BASELINE and best is None:
            second = "no baseline row run"
        elif second == BEST_BASELINE and best is not None:
            why = (
                f"{why} ({_label(best)}: highest mean OA of the {len(scored)} baseline rows, "
                "chosen on these test tiles)"
            )
            second = best
        if first in by_method and second in by_method:
            a, b = Arm(_label(first), by_method[first]), Arm(_label(second), by_method[second])
            pairs.append(Pair(a, b, why))
        else:
            missing.append(f"{why} ({_label(first)} vs {_label(second)})")
    return pairs, missing


TABLE_PREAMBLE = (
    "Cells of the table above: mean ± std over seeds; table.csv adds each cell's standard "
    "error (std / sqrt(n)) and count. `cloudxfer compare RUN_A RUN_B` compares any runs."
)


def table_section(
    run_dirs: Sequence[Path], alpha: float = 0.05, cloudy_threshold: float = 0.0
) -> str:
    """Return a table's comparison section from its tested run folders.

    A pair whose rows were not run is listed as such; one that cannot be compared (e.g. a
    run without predictions) says why, and the others are still compared.
    """
    try:
        pairs, missing = table_pairs(run_dirs)
    except ValueError as err:
        return f"### Paired comparisons (OA)\n\nNot computed: {err}"
    comparisons = evaluate(pairs, cloudy_threshold, strict=False)
    text = format_section(comparisons, alpha, TABLE_PREAMBLE)
    if missing:
        text += "\n\nNot compared (a row not run): " + "; ".join(missing) + "."
    return text


def _arm(letter: str, spec: str) -> tuple[Arm, str]:
    """One command-line arm (folders joined by commas) and its legend line."""
    folders = [Path(part) for part in spec.split(",") if part]
    records = [read_record(f / RECORD_FILENAME) or {} for f in folders]
    seeds = [s for r in records if isinstance(s := r.get("seed"), int)]
    methods = sorted({str(r["method"]) for r in records if "method" in r})
    by_seed = len(seeds) == len(folders) and len(set(seeds)) == len(seeds)
    keys = seeds if by_seed else list(range(len(folders)))
    name = f"{letter} ({', '.join(methods)})" if methods else letter
    runs = dict(zip(keys, folders, strict=True))
    seeds_text = "seeds " if by_seed else "positions "
    legend = f"- {name}: {seeds_text}{' '.join(map(str, keys))}: " + ", ".join(map(str, folders))
    return Arm(name, runs), legend


def main(argv: Sequence[str] | None = None) -> int:
    """Compare runs on their shared test tiles; print (and optionally write) the section."""
    parser = argparse.ArgumentParser(
        prog="cloudxfer compare",
        description="Paired comparisons of tested runs on the same test tiles: per-seed OA "
        "differences with a t-interval over seeds, exact McNemar tests per seed, overall and on "
        "cloudy and clear tiles, Holm-adjusted, with generated verdicts.",
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="a tested run folder (one seed; holds test/predictions.csv), or one method's "
        "folders at several seeds joined by commas, paired with another such arm by their "
        "run.json seeds (by position when a folder has no run.json seed)",
    )
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="compare the 1st RUN with the 2nd, the 3rd with the 4th, ... (default: every RUN "
        "after the first with the first)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise level")
    parser.add_argument(
        "--cloudy-threshold",
        type=float,
        default=0.0,
        help="a tile is cloudy when its cloud fraction exceeds this (the test metrics' default)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the section here")
    args = parser.parse_args(argv)
    if len(args.runs) < 2 or (args.pairs and len(args.runs) % 2):
        parser.error("give at least two RUNs (with --pairs, an even number)")
    arms, legend = zip(
        *(_arm(chr(ord("A") + i) if i < 26 else f"R{i}", spec) for i, spec in enumerate(args.runs)),
        strict=True,
    )
    if args.pairs:
        pairs = [Pair(arms[i], arms[i + 1]) for i in range(0, len(arms), 2)]
    else:
        pairs = [Pair(arms[0], other) for other in arms[1:]]
    # one run on each side: a pair whatever their seeds (e.g. one method at two seeds)
    pairs = [
        Pair(p.a, Arm(p.b.name, {next(iter(p.a.runs)): next(iter(p.b.runs.values()))}), p.why)
        if len(p.a.runs) == len(p.b.runs) == 1 else p
        for p in pairs
    ]  # fmt: skip
    try:
        for pair in pairs:
            if pair.a.runs.keys() != pair.b.runs.keys():
                raise ValueError(
                    f"{pair.a.name} has seeds {sorted(pair.a.runs)}, {pair.b.name} "
                    f"{sorted(pair.b.runs)}: give the same seeds on both sides"
                )
        comparisons = evaluate(pairs, args.cloudy_threshold)
    except ValueError as err:
        print(f"cloudxfer compare: error: {err}", file=sys.stderr)
        return 2
    text = "\n".join(["Runs:", "", *legend, "", format_section(comparisons, args.alpha)])
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")
    return 0
