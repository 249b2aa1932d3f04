"""The simulator's calibration: targets checked on the mean, figures written as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.calibrate_simulator import TARGETS, check_targets, main, summarise, write_record
from cloudxfer.sim import generate_source, generate_target

IN_REGIME = {
    "R1": 86.0, "R2": 60.0, "R3": 55.0, "R4": 66.0, "R4_source_val": 88.0, "R5": 40.0,
    "chance": 10.0,
}  # fmt: skip


def test_every_target_holds_in_the_regime() -> None:
    assert check_targets(IN_REGIME) == dict.fromkeys(TARGETS, True)


@pytest.mark.parametrize(
    ("key", "value", "failed"),
    [
        ("R1", 93.0, {"R1"}),  # too easy (the gap to R3 only grows)
        ("R1", 79.0, {"R1", "R3"}),
        ("R2", 71.0, {"R2"}),
        ("R2", 49.0, {"R2"}),
        ("R3", 61.5, {"R3", "R4"}),  # only 24.5 points below R1 (and R4 only 4.5 above it)
        ("R4", 62.9, {"R4"}),  # only 7.9 points above R3
        ("R4_source_val", 84.9, {"R4_source_val"}),
        ("R5", 49.0, {"R5"}),  # lost 37 of 76 points above chance: less than half
    ],
)
def test_each_target_fails_on_its_own(key: str, value: float, failed: set[str]) -> None:
    checks = check_targets({**IN_REGIME, key: value})
    assert {k for k, ok in checks.items() if not ok} == failed


@pytest.mark.slow
def test_calibration_writes_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_target(tmp_path / "target", pairs=300, seed=1)
    generate_source(tmp_path / "source", per_class=5, seed=1, size=64)
    out = tmp_path / "calibration.json"
    args = ["--data", str(tmp_path / "target"), "--source", str(tmp_path / "source"),
            "--epochs", "1", "--labelled-epochs", "1", "--source-epochs", "1",
            "--train-seeds", "0", "1", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    record = json.loads(out.read_text())
    for key in ("R1", "R2", "R3", "R4", "R4_source_val", "R5"):
        assert 0.0 <= record[key] <= 100.0
        assert len(record["per_seed"][key]) == 2
        assert record[key] == pytest.approx(sum(record["per_seed"][key]) / 2, abs=0.01)
    assert record["chance"] == 10.0
    assert record["targets_met"] == check_targets(record)
    table = capsys.readouterr().out
    assert "training seeds 0 1" in table and "Targets (on the mean over training seeds" in table
    assert "(2) SAR confusion, first seed" in table
    # Re-running prints the same figures: seeded and deterministic.
    again = tmp_path / "again.json"
    assert main([*args[:-1], str(again), "--figures", "R3"]) == 0
    assert json.loads(again.read_text())["R3"] == record["R3"]
    assert "Targets not checked: only R3 computed" in capsys.readouterr().out


def _record(path: Path, seeds: list[int], r1: list[float], **settings: object) -> Path:
    summary = summarise({"R1": r1, "R3": [55.0] * len(r1)}, seeds, 10.0)
    write_record(path, summary, {"data": "/d", "epochs": 25, **settings})
    return path


def test_merge_combines_the_training_seeds_of_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _record(tmp_path / "a.json", [0], [80.0])
    b = _record(tmp_path / "b.json", [1, 2], [84.0, 86.0])
    out = tmp_path / "merged.json"
    assert main(["--merge", str(a), str(b), "--json", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["train_seeds"] == [0, 1, 2]
    assert merged["per_seed"]["R1"] == [80.0, 84.0, 86.0]
    assert merged["R1"] == pytest.approx(83.33, abs=0.01)
    assert merged["std"]["R1"] == pytest.approx(3.06, abs=0.01)
    assert merged["settings"] == {"data": "/d", "epochs": 25}
    assert "training seeds 0 1 2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("other", "message"),
    [({"seeds": [0], "epochs": 25}, "seeds repeat"), ({"seeds": [1], "epochs": 10}, "differ")],
)
def test_merge_refuses_repeated_seeds_and_other_settings(
    tmp_path: Path, other: dict[str, object], message: str
) -> None:
    a = _record(tmp_path / "a.json", [0], [80.0])
    seeds = other["seeds"]
    assert isinstance(seeds, list)
    b = _record(tmp_path / "b.json", seeds, [84.0], epochs=other["epochs"])
    with pytest.raises(SystemExit, match=message):
        main(["--merge", str(a), str(b)])
