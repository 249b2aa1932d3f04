"""Result tables from the runs' ``metrics.json`` files (never from memory).

One row per method in registry order, OA / AA / Kappa overall, on cloudy and on clear test
tiles, as the mean over seeds with the std and the number of seeds (``table.csv`` adds each
cell's standard error and count). Runs of other profiles, data sets or overrides are refused:
one table describes one setting. Wall times go to ``timing.csv``, apart from the scores, so
that ``table.csv`` is the same whenever the same runs are tabulated.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudxfer.reporting.statistics import Summary, summarize
from cloudxfer.runner.methods import PaperRow, method
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME
from datamodules.runfiles import atomic_open

__all__ = [
    "TableRow",
    "collect",
    "format_image_quality",
    "format_markdown",
    "format_paper_table",
    "write_csv",
    "write_timing_csv",
]

COLUMNS: tuple[tuple[str, str, bool], ...] = tuple(
    (f"{name}{title}", f"{key}{suffix}", percent)
    for suffix, title in (("", ""), ("_cloudy", " cloudy"), ("_clear", " clear"))
    for name, key, percent in (("OA", "oa", True), ("AA", "aa", True), ("Kappa", "kappa", False))
)
"""(column title, metrics.json key, shown in percent)."""
QUALITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("PSNR (dB)", "psnr"), ("SSIM", "ssim"),
    ("PSNR of the input", "psnr_input"), ("SSIM of the input", "ssim_input"),
    ("tiles", "n_restored"),
)  # fmt: skip
"""Image quality of restoring (SPL) and translating (CycIT) rows: (column title, key)."""
COUNT_KEYS = ("n_restored", "n_translated")
"""What a row's scored tiles are counted as: restored, or translated."""


@dataclass(frozen=True)
class TableRow:
    """One method's scores over its seeds."""

    method: str
    label: str
    group: str
    seeds: tuple[int, ...]
    values: dict[str, tuple[float, ...]]
    """Per metrics key, one value per seed (missing keys: no value)."""
    counts: dict[str, Any]
    """Test tile counts (``n``, ``n_cloudy``, ``n_clear``) of the first seed."""

    def mean_std(self, key: str) -> tuple[float, float] | None:
        """Mean and sample std of ``key`` over seeds (std 0 for one seed); None if absent."""
        values = self.values.get(key, ())
        if not values:
            return None
        mean = sum(values) / len(values)
        if len(values) < 2:
            return mean, 0.0
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return mean, math.sqrt(var)

    def summary(self, key: str) -> Summary | None:
        """Mean, std, standard error and count of ``key`` over seeds; None if absent."""
        return summarize(self.values.get(key, ()))


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read a run's results ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a JSON object")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def collect(run_dirs: Sequence[Path]) -> list[TableRow]:
    """Read every tested run folder's record and metrics; one row per method, input order.

    Raises:
        ValueError: A folder has no record or metrics, or the runs mix settings (profile,
            data set, overrides).

    """
    by_method: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    setting: dict[str, Any] | None = None
    for directory in run_dirs:
        record = _read(directory / RECORD_FILENAME)
        if setting is None:
            setting = record.get("setting")
        elif record.get("setting") != setting:
            raise ValueError(
                f"{directory}: made with {record.get('setting')}, the table's other runs with "
                f"{setting}; one table holds one profile, data set and set of overrides"
            )
        by_method.setdefault(str(record["method"]), []).append((record, _read(directory / METRICS)))
    rows = []
    for name, entries in by_method.items():
        m = method(name)
        seeds = tuple(int(r["seed"]) for r, _ in entries)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{name}: seed repeated in the table's runs: {seeds}")
        values = {
            key: tuple(float(mt[key]) for _, mt in entries if _is_number(mt.get(key)))
            for key in sorted({key for _, mt in entries for key in mt})
            if key not in ("n", "n_cloudy", "n_clear")
        }
        counts = {k: entries[0][1].get(k) for k in ("n", "n_cloudy", "n_clear")}
        rows.append(TableRow(name, m.label, m.group, seeds, values, counts))
    return rows


def _cell(row: TableRow, key: str, percent: bool) -> str:
    stats = row.mean_std(key)
    if stats is None:
        return "n/a"
    mean, std = (100 * stats[0], 100 * stats[1]) if percent else stats
    digits = 2 if percent else 3
    text = f"{mean:.{digits}f}"
    return text if len(row.seeds) < 2 else f"{text} ± {std:.{digits}f}"


def format_image_quality(rows: Sequence[TableRow]) -> str:
    """Markdown table of the image-to-image rows' PSNR / SSIM ("" when there is none).

    A row restores (SPL) when its metrics count restored tiles (``n_restored``: the clouded
    test tiles with a clear twin) and translates SAR to optical (CycIT) when they count
    translated ones (``n_translated``: every test tile with a clear twin); a translation has
    no input score. Scores read n/a where no test tile had a clear twin (real cloudy data).
    """
    scored = [row for row in rows if any(key in row.values for key in COUNT_KEYS)]
    if not scored:
        return ""
    titles = " | ".join(title for title, _ in QUALITY_COLUMNS)
    lines = [
        "\nRestoration (on the clouded test tiles) and translation (on every test tile) with a "
        "clear twin, against that twin, in reflectance:\n",
        f"| model | {titles} | n |",
        "|" + "---|" * (len(QUALITY_COLUMNS) + 2),
    ]
    for row in scored:
        cells = [_cell(row, key, False) for _, key in QUALITY_COLUMNS[:-1]]
        tiles = next(row.values[key] for key in COUNT_KEYS if key in row.values)
        lines.append(
            f"| {row.label} | "
            + " | ".join([*cells, f"{int(tiles[0])}"])  # the same test tiles at every seed
            + f" | {len(row.seeds)} |"
        )
    return "\n".join(lines)


def format_markdown(rows: Sequence[TableRow]) -> str:
    """Markdown table (mean ± std over seeds when there are several; n = seeds)."""
    header = "| model | " + " | ".join(title for title, _, _ in COLUMNS) + " | n |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        cells = [_cell(row, key, percent) for _, key, percent in COLUMNS]
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {len(row.seeds)} |")
    if rows:
        c = rows[-1].counts
        lines.append(
            f"\nTest tiles: {c.get('n')} ({c.get('n_cloudy')} cloudy, {c.get('n_clear')} clear)."
        )
    quality = format_image_quality(rows)
    return "\n".join([*lines, quality] if quality else lines)


def _layout(rows: Sequence[TableRow], layout: Sequence[PaperRow] | None) -> list[PaperRow]:
    """Return the paper's rows (``layout``), or one row per result in its own order."""
    if layout is not None:
        return list(layout)
    return [PaperRow(row.label, row.group, row.method) for row in rows]


def format_paper_table(rows: Sequence[TableRow], layout: Sequence[PaperRow]) -> str:
    """Markdown table in the paper's order and groups: ours, then the paper's own numbers.

    A row whose method is not registered yet, or was not run, says so; the published OA, AA
    and Kappa stand in separate columns, never mixed with ours.
    """
    by_method = {row.method: row for row in rows}
    titles = " | ".join(title for title, _, _ in COLUMNS)
    lines = [
        f"| group | method | {titles} | n | paper OA | paper AA | paper Kappa |",
        "|" + "---|" * (len(COLUMNS) + 6),
    ]
    for entry in layout:
        row = by_method.get(entry.method) if entry.method else None
        if row is None:
            cells = ["not run"] + [""] * (len(COLUMNS) - 1) + [""]
        else:
            cells = [_cell(row, key, percent) for _, key, percent in COLUMNS] + [
                str(len(row.seeds))
            ]
        paper = ["-", "-", "-"] if entry.published is None else [
            f"{entry.published[0]:.2f}", f"{entry.published[1]:.2f}", f"{entry.published[2]:.3f}"
        ]  # fmt: skip
        lines.append(f"| {entry.group} | {entry.label} | " + " | ".join(cells + paper) + " |")
    if rows:
        c = rows[-1].counts
        lines.append(
            f"\nTest tiles: {c.get('n')} ({c.get('n_cloudy')} cloudy, {c.get('n_clear')} clear)."
        )
    quality = format_image_quality(rows)
    return "\n".join([*lines, quality] if quality else lines)


def write_csv(
    rows: Sequence[TableRow],
    path: Path,
    layout: Sequence[PaperRow] | None = None,
    provenance: Mapping[str, str] | None = None,
) -> Path:
    """Write one line per row: every column's statistics (fractions), seeds, paper numbers.

    Per column (e.g. ``OA``): the mean over seeds, ``OA std`` (sample std), ``OA se`` (standard
    error, std / sqrt(n)) and ``OA n`` (the seeds scored; a subset without tiles scores fewer);
    std and se are empty below two seeds, where the spread is unknown. ``provenance``
    (command, revision, profile, data, ...) adds one column per entry, the same on every line,
    so the CSV says what made it as ``table.md``'s header does. No wall time: see
    :func:`write_timing_csv`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    by_method = {row.method: row for row in rows}
    extra = dict(provenance or {})
    with atomic_open(path) as handle:
        writer = csv.writer(handle)
        titles = [t for title, _, _ in COLUMNS for t in _stat_titles(title)]
        writer.writerow(["group", "label", "method", *titles, "n_seeds", "seeds",
                         "paper OA", "paper AA", "paper Kappa", *extra])  # fmt: skip
        for entry in _layout(rows, layout):
            row = by_method.get(entry.method) if entry.method else None
            cells: list[str | int] = []
            for _, key, _ in COLUMNS:
                cells += _stat_cells(None if row is None else row.summary(key))
            seeds = "" if row is None else " ".join(map(str, row.seeds))
            count: str | int = "" if row is None else len(row.seeds)
            paper = list(entry.published) if entry.published else ["", "", ""]
            method_name = entry.method or "not run"
            writer.writerow(
                [entry.group, entry.label, method_name, *cells, count, seeds, *paper,
                 *extra.values()]
            )  # fmt: skip
    return path


def _stat_titles(title: str) -> tuple[str, str, str, str]:
    """CSV titles of one column's statistics: mean (the title itself), std, se, n."""
    return title, f"{title} std", f"{title} se", f"{title} n"


def _stat_cells(summary: Summary | None) -> list[str | int]:
    """CSV cells of one column's statistics (empty where undefined)."""
    if summary is None:
        return ["", "", "", ""]
    spread = ["" if v is None else f"{v:.6f}" for v in (summary.std, summary.se)]
    return [f"{summary.mean:.6f}", *spread, summary.n]


def write_timing_csv(
    path: Path, wall_s: float, runs: int, provenance: Mapping[str, str] | None = None
) -> Path:
    """Write the wall time of the invocation that made a table (apart from its scores).

    One line: the seconds the invocation took (fits and tests that ran, plus reading the runs
    it reused, so a re-run that reuses every run takes seconds) and the runs it planned, with
    the same ``provenance`` columns as ``table.csv``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(provenance or {})
    with atomic_open(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(["what", "wall_s", "runs", *extra])
        writer.writerow(["invocation", f"{wall_s:.1f}", runs, *extra.values()])
    return path
