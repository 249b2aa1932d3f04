"""Paired comparisons from run folders: table sections, ``cloudxfer compare``, table.csv."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from cloudxfer.cli import main as cli_main
from cloudxfer.reporting.compare import (
    evaluate,
    paired_counts,
    read_tiles,
    table_pairs,
    table_section,
)
from cloudxfer.reporting.statistics import holm
from cloudxfer.reporting.tables import collect, write_csv, write_timing_csv
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME

N_TILES = 100
CLOUDY = set(range(40))
"""Tiles 0-39 are cloudy (cloud fraction 0.5), 40-99 clear (0)."""


def _fake_run(
    root: Path, method: str, seed: int, wrong: set[int], drop: set[int] | None = None
) -> Path:
    """A tested run folder as the runner leaves it: run.json, test/metrics.json and
    test/predictions.csv; the run is wrong on the tiles ``wrong`` and lacks ``drop``."""
    folder = root / f"seed{seed}" / method
    (folder / "test").mkdir(parents=True)
    setting = {"profile": "smoke", "dataset": "sen12ms_cloud", "overrides": []}
    record = {"id": f"{method}-{seed}", "method": method, "seed": seed, "setting": setting}
    (folder / RECORD_FILENAME).write_text(json.dumps(record))
    tiles = [i for i in range(N_TILES) if i not in (drop or set())]
    rows = []
    for i in tiles:
        label = i % 5
        pred = (label + 1) % 5 if i in wrong else label
        rows.append({"id": f"tile{i:03d}", "label": label, "pred": pred, "label_name": "",
                     "pred_name": "", "confidence": 0.9,
                     "cloud_fraction": 0.5 if i in CLOUDY else 0.0})  # fmt: skip
    with (folder / "test" / "predictions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def oa(subset: list[int]) -> float:
        return sum(i not in wrong for i in subset) / len(subset)

    cloudy = [i for i in tiles if i in CLOUDY]
    clear = [i for i in tiles if i not in CLOUDY]
    metrics = {"oa": oa(tiles), "aa": oa(tiles), "kappa": 0.5, "oa_cloudy": oa(cloudy),
               "oa_clear": oa(clear), "n": len(tiles), "n_cloudy": len(cloudy),
               "n_clear": len(clear)}  # fmt: skip
    (folder / METRICS).write_text(json.dumps(metrics))
    return folder


def _spread(count: int, offset: int = 0) -> set[int]:
    """``count`` tiles spread over cloudy and clear ones alike (every k-th tile)."""
    return {(offset + round(k * N_TILES / count)) % N_TILES for k in range(count)}


def _table_runs(root: Path) -> list[Path]:
    """F2 far ahead of f_S, F2 without IRM all but tied, two baselines, one ablation."""
    runs = []
    for seed in (0, 1, 2):
        runs += [
            _fake_run(root, "target", seed, _spread(10 + seed)),
            _fake_run(root, "source_finetune", seed, _spread(60 + 2 * seed)),
            _fake_run(root, "target_noirm", seed, _spread(10 + seed) ^ {seed, 50 + seed}),
            _fake_run(root, "sl", seed, _spread(70)),
            _fake_run(root, "kdhn", seed, _spread(45, seed)),
            _fake_run(root, "target_soft", seed, _spread(11 + seed, 1)),
        ]
    return runs


def test_paired_counts_split_cloudy_and_clear_and_refuse_other_tiles(tmp_path: Path) -> None:
    a = read_tiles(_fake_run(tmp_path, "target", 0, {0, 1, 50}))
    b = read_tiles(_fake_run(tmp_path, "sl", 0, {1, 2, 3, 60, 61}))
    counts = paired_counts(a, b)
    assert (counts["all"].n, counts["cloudy"].n, counts["clear"].n) == (100, 40, 60)
    # only the first right: 2, 3, 60, 61; only the second: 0, 50
    assert (counts["all"].a_only, counts["all"].b_only) == (4, 2)
    assert (counts["cloudy"].a_only, counts["cloudy"].b_only) == (2, 1)
    assert counts["all"].delta == pytest.approx(2.0)  # 97 % - 95 %
    other = _fake_run(tmp_path / "o", "sl", 0, set(), drop={7})
    with pytest.raises(ValueError, match="different labelled test tiles") as err:
        paired_counts(a, read_tiles(other))
    assert str(a.path) in str(err.value) and str(other / "test" / "predictions.csv") in str(
        err.value
    )
    assert "tile007" in str(err.value)


def test_read_tiles_refuses_a_cloudy_split_other_than_the_metrics(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, "target", 0, set())
    with pytest.raises(ValueError, match="another cloudy threshold"):
        read_tiles(run, cloudy_threshold=0.6)  # every tile clear: 0 cloudy, metrics say 40
    (run / "test" / "predictions.csv").unlink()
    with pytest.raises(ValueError, match="cannot read the run's per-tile predictions"):
        read_tiles(run)


def test_table_section_compares_the_pairs_a_reader_asks_about(tmp_path: Path) -> None:
    runs = _table_runs(tmp_path)
    pairs, missing = table_pairs(runs)
    names = [(p.a.name, p.b.name) for p in pairs]
    assert names[:3] == [
        ("F2 target, IRM (opt & SAR)", "Source f_S (opt)"),
        ("F2 target, IRM (opt & SAR)", "F2 target, no IRM (opt & SAR)"),
        ("F2 target, IRM (opt & SAR)", "KDHN (opt & SAR)"),  # 55 % beats SL's 30 %
    ]
    assert names[3] == ("F2, soft targets", "F2 target, IRM (opt & SAR)")
    assert len(missing) == 3 and "F2, late fusion" in " ".join(missing)
    comparisons = evaluate(pairs)
    assert len(comparisons.results) == 12  # 4 pairs x (all, cloudy, clear)
    first = comparisons.results[0]
    assert first.subset == "all" and first.seeds == (0, 1, 2)
    assert first.deltas == pytest.approx((50.0, 51.0, 52.0))
    # Holm across the 12 lines, tile tests (largest p per seed) and t-tests over seeds apart
    raw_tiles = [max(c.p for c in r.counts) for r in comparisons.results]
    assert [r.tile_p for r in comparisons.results] == pytest.approx(holm(raw_tiles))
    assert first.tile_p == pytest.approx(12 * raw_tiles[0])  # the smallest of the 12
    # the soft-targets ablation is 1 point behind at every seed: no spread, no t-test there
    assert comparisons.results[9].interval.p is comparisons.results[9].seed_p is None
    tested = [r for r in comparisons.results if r.interval.p is not None]
    assert len(tested) == 11
    raw_seeds = [r.interval.p or 0.0 for r in tested]
    assert [r.seed_p for r in tested] == pytest.approx(holm(raw_seeds))

    section = table_section(runs)
    assert section.startswith("### Paired comparisons (OA)")
    assert "table.csv adds each cell's standard error" in section
    assert "with 3 seeds its half-width is 4.30 standard errors, so with few seeds it is wide" in (
        section
    )
    assert "Holm-adjusted across the 12 lines" in section
    assert "| F2 target, IRM (opt & SAR) | Source f_S (opt) | all (100) | 0 1 2 | +50.00 / " in (
        section
    )
    verdicts = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(verdicts) == 12
    assert verdicts[0].startswith(
        "- F2 vs f_S: does the transfer beat the source classifier, all tiles: "
        "F2 target, IRM (opt & SAR) scores higher OA than Source f_S (opt) (+51.00 points;"
    )
    assert "holds on the test tiles at every seed" in verdicts[0]
    cloudy = next(v for v in verdicts if v.startswith("- F2 vs f_S") and "cloudy tiles:" in v)
    assert "scores higher OA on cloudy tiles than" in cloudy
    noirm = next(v for v in verdicts if v.startswith("- F2 with vs without IRM, all tiles"))
    assert "not distinguishable at this sample size" in noirm
    best = next(v for v in verdicts if v.startswith("- F2 vs the best baseline (KDHN"))
    assert "highest mean OA of the 2 baseline rows, chosen on these test tiles" in best
    assert "Not compared (a row not run): " in section


def test_a_pair_without_predictions_is_reported_and_the_others_compared(tmp_path: Path) -> None:
    runs = _table_runs(tmp_path)
    (tmp_path / "seed1" / "target_noirm" / "test" / "predictions.csv").unlink()
    section = table_section(runs)
    assert "- F2 target, IRM (opt & SAR) vs F2 target, no IRM (opt & SAR): not compared: " in (
        section
    )
    assert "Holm-adjusted across the 9 lines" in section
    with pytest.raises(ValueError, match="cannot read the run's per-tile predictions"):
        evaluate(table_pairs(runs)[0])


def test_cloudxfer_compare_on_runs_and_seed_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = _table_runs(tmp_path)
    target, f_s = str(runs[0]), str(runs[1])
    out = tmp_path / "compare.md"
    assert cli_main(["compare", target, f_s, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Runs:\n\n- A (target): seeds 0: " + target)
    assert "| A (target) | B (source_finetune) | all (100) | 0 | +50.00 | +50.00 | n/a" in printed
    assert "one seed: no interval over seeds" in printed
    assert out.read_text() == printed
    # three seeds a side, joined by commas, paired by their run.json seeds
    seeds = {m: ",".join(str(tmp_path / f"seed{s}" / m) for s in (2, 0, 1))
             for m in ("target", "source_finetune", "target_noirm")}  # fmt: skip
    assert cli_main(["compare", seeds["target"], seeds["source_finetune"],
                     seeds["target_noirm"]]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "- B (source_finetune): seeds 2 0 1: " in printed
    assert "| A (target) | B (source_finetune) | all (100) | 0 1 2 | +50.00 / +51.00 / " in printed
    assert "Holm-adjusted across the 6 lines" in printed
    assert "A (target) vs C (target_noirm), OA: not distinguishable at this sample size" in printed
    # --pairs: 1st with 2nd, 3rd with 4th
    assert cli_main(["compare", "--pairs", target, f_s, str(runs[2]), str(runs[3])]) == 0
    printed = capsys.readouterr().out
    assert "| C (target_noirm) | D (sl) |" in printed and "| A (target) | C " not in printed


def test_cloudxfer_compare_refuses_other_tiles_and_other_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _fake_run(tmp_path, "target", 0, set())
    b = _fake_run(tmp_path / "other", "target", 0, set(), drop={3})
    assert cli_main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cloudxfer compare: error: ") and "different labelled test tiles" in err
    assert str(a / "test" / "predictions.csv") in err and str(b / "test" / "predictions.csv") in err
    c = _fake_run(tmp_path, "target", 1, set())
    assert cli_main(["compare", f"{a},{c}", str(b)]) == 2
    assert "give the same seeds on both sides" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["compare", str(a)])


def test_table_csv_holds_std_standard_error_and_counts_and_timing_its_own_file(
    tmp_path: Path,
) -> None:
    runs = _table_runs(tmp_path)
    rows = collect(runs)
    with write_csv(rows, tmp_path / "table.csv", provenance={"Seeds": "0 1 2"}).open() as handle:
        lines = {line["method"]: line for line in csv.DictReader(handle)}
    line = lines["target"]
    oa = [0.90, 0.89, 0.88]  # 10, 11, 12 wrong tiles of 100
    mean = sum(oa) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in oa) / 2)
    assert float(line["OA"]) == pytest.approx(mean)
    assert float(line["OA std"]) == pytest.approx(std, abs=1e-6)
    assert float(line["OA se"]) == pytest.approx(std / math.sqrt(3), abs=1e-6)
    assert (line["OA n"], line["OA cloudy n"], line["n_seeds"]) == ("3", "3", "3")
    assert line["AA cloudy"] == line["AA cloudy n"] == ""  # not in these metrics
    assert not any("wall" in title.lower() for title in line)
    one = collect([runs[0]])
    with write_csv(one, tmp_path / "one.csv").open() as handle:
        (single,) = list(csv.DictReader(handle))
    assert (single["OA std"], single["OA se"], single["OA n"]) == ("", "", "1")
    timing = write_timing_csv(tmp_path / "timing.csv", 12.34, 18, {"Seeds": "0 1 2"})
    assert list(csv.reader(timing.open())) == [
        ["what", "wall_s", "runs", "Seeds"],
        ["invocation", "12.3", "18", "0 1 2"],
    ]


def test_cloudxfer_run_writes_comparisons_under_the_table_and_timing_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    import torch

    from cloudxfer.checkpoints import METADATA_KEY
    from cloudxfer.runner import METHODS
    from cloudxfer.runner import executor as execute_module
    from cloudxfer.runner.cli import main as run_main

    wrong = {"target": 10, "target_noirm": 12, "source_finetune": 60}

    def fake(args: list[str], env: Any = None) -> int:
        """The runner's fit / test launches: checkpoints, then metrics and predictions."""
        options = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
        folder = Path(options["--trainer.default_root_dir"])
        if args[3] == "fit":
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
            meta = {"state_dict": {}, METADATA_KEY: {"stage": METHODS[folder.name].stage}}
            for name in ("last.ckpt", "best.ckpt"):
                torch.save(meta, folder / "checkpoints" / name)
        else:
            seed = int(options["--profile.seed"])
            made = _fake_run(tmp_path / "made", folder.name, seed,
                             _spread(wrong.get(folder.name, 30) + seed))  # fmt: skip
            for name in ("metrics.json", "predictions.csv"):
                (folder / "test").mkdir(exist_ok=True)
                (folder / "test" / name).write_bytes((made / "test" / name).read_bytes())
        return 0

    monkeypatch.setattr(execute_module, "launch", fake)
    # no data on disk: the launches are fakes, so the runner's check of the data is skipped
    monkeypatch.setattr("cloudxfer.runner.cli.check_data", lambda runs: None)
    out = tmp_path / "table"
    argv = ["--methods", "target", "target_noirm", "--seeds", "0", "1", "--profile", "smoke"]
    assert run_main([*argv, "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    section = table[table.index("### Paired comparisons (OA)") : table.index("\nConvergence (")]
    assert "| F2 target, IRM (opt & SAR) | Source f_S (opt) | all (100) | 0 1 | " in section
    assert "- F2 with vs without IRM, cloudy tiles: " in section
    assert "with 2 seeds its half-width is 12.71 standard errors" in section
    with (out / "table.csv").open() as handle:
        lines = {line["method"]: line for line in csv.DictReader(handle)}
    assert lines["target"]["OA n"] == "2" and float(lines["target"]["OA se"]) > 0
    with (out / "timing.csv").open() as handle:
        (timing,) = list(csv.DictReader(handle))
    assert timing["what"] == "invocation" and float(timing["wall_s"]) >= 0
    assert timing["Seeds"] == "0 1" and int(timing["runs"]) > 4
