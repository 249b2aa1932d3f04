"""The README's demo table is what ``cloudxfer chain`` would write for its numbers.

The table is parsed back into the rows the chain's formatter takes (labels from the method
registry, columns by their titles), formatted again and compared as text: an edited number,
label, column or layout that the chain would not print fails, and so does a changed formatter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloudxfer.chain import CHAIN_METHODS
from cloudxfer.reporting.tables import COLUMNS, TableRow, format_markdown
from cloudxfer.runner import METHODS, upstream_closure

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
DEMO_RESULTS = REPO / "runs" / "demo" / "results.md"
"""What ``make demo`` last wrote in this working tree (ignored by git; absent in CI)."""
HEADER = "| model | OA |"
TILES = re.compile(r"Test tiles: (\d+) \((\d+) cloudy, (\d+) clear\)\.")


def _table(text: str) -> list[str]:
    """The first demo table in ``text``: its header line and every table line after it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _rows_from_readme(text: str) -> list[TableRow]:
    """Parse the README's demo table into the chain's rows (one seed each)."""
    header, _, *body = _table(text)
    titles = _cells(header)
    assert titles[0] == "model" and titles[-1] == "n", titles
    columns = {title: (key, percent) for title, key, percent in COLUMNS}
    tested = [METHODS[name] for name in upstream_closure(list(CHAIN_METHODS))]
    by_label = {m.label: m for m in tested if m.tested}
    tiles = TILES.search(text[text.index(header) :])
    assert tiles, "no 'Test tiles: N (A cloudy, B clear).' sentence after the demo table"
    n, n_cloudy, n_clear = map(int, tiles.groups())
    rows = []
    for line in body:
        label, *cells, seeds = _cells(line)
        assert label in by_label, f"{label!r} is not a label of the chain's rows"
        values: dict[str, tuple[float, ...]] = {}
        for title, cell in zip(titles[1:-1], cells, strict=True):
            key, percent = columns[title]
            values[key] = (float(cell) / 100 if percent else float(cell),)
        m = by_label[label]
        counts = {"n": n, "n_cloudy": n_cloudy, "n_clear": n_clear}
        rows.append(TableRow(m.name, m.label, m.group, tuple(range(int(seeds))), values, counts))
    return rows


def test_readme_demo_table_is_the_chains_format_of_its_numbers() -> None:
    text = README.read_text(encoding="utf-8")
    rows = _rows_from_readme(text)
    # the chain's rows, all of them, in its order
    assert [row.method for row in rows] == [
        name for name in upstream_closure(list(CHAIN_METHODS)) if METHODS[name].tested
    ]
    expected = format_markdown(rows)
    assert expected.startswith(HEADER)
    # the table, a blank line and the test-tile sentence, exactly as `cloudxfer chain` writes
    # them to results.md (the README's paragraph goes on after that sentence)
    assert expected in text


def test_readme_demo_table_is_the_last_demo_runs_table() -> None:
    if not DEMO_RESULTS.is_file():
        pytest.skip(f"no demo run here ({DEMO_RESULTS}; `make demo` writes it)")
    readme = README.read_text(encoding="utf-8")
    results = DEMO_RESULTS.read_text(encoding="utf-8")
    assert _table(readme) == _table(results)
    tiles = TILES.search(results)
    assert tiles and tiles.group(0) in readme
    # the per-stage convergence lines the demo printed after its table
    convergence = results.split("\nConvergence (", 1)[1].splitlines()[1:]
    assert convergence and all(line in readme.splitlines() for line in convergence)
