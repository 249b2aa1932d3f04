"""Run identity: data by content, code by digest; moving folders reuses; locks; failed setups."""

from __future__ import annotations

import importlib
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cloudxfer.runner import Setting, execute, identity, plan
from cloudxfer.runner import executor as execute_module
from cloudxfer.runner.plan import profile_path
from datamodules.runfiles import write_json
from tests.cloudxfer.runner.test_runner import _fake_cloudxfer, _folder

plan_module = importlib.import_module("cloudxfer.runner.plan")  # the module, not plan()


def _data(root: Path) -> Path:
    """A tiny data folder: a labels file and two 'rasters'."""
    (root / "s2").mkdir(parents=True)
    (root / "labels.csv").write_text("id,label\na,1\nb,2\n")
    (root / "s2" / "a.tif").write_bytes(b"x" * 10)
    (root / "s2" / "b.tif").write_bytes(b"y" * 20)
    return root


def _setting(out: Path, data: Path, source: Path) -> Setting:
    return Setting(
        profile=profile_path("smoke"),
        dataset="sen12ms_cloud",
        overrides=(f"--profile.data_root={data}", f"--profile.source_root={source}"),
        run_root=lambda seed: out / f"seed{seed}",
    )


def test_data_is_identified_by_content_not_path(tmp_path: Path) -> None:
    a = _data(tmp_path / "a")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert identity.data_fingerprint(a) == identity.data_fingerprint(b)
    (b / "labels.csv").write_text("id,label\na,1\nb,3\n")  # a label changed: other data
    assert identity.data_fingerprint(b.resolve()) != identity.data_fingerprint(a)
    # a simulated folder is what its record says, whatever its rasters' names
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "simulation.json").write_text('{"generator": "target", "seed": 0}')
    other = tmp_path / "sim2"
    shutil.copytree(sim, other)
    (other / "extra.tif").write_bytes(b"z")
    assert identity.data_fingerprint(sim) == identity.data_fingerprint(other)


def test_moving_results_and_data_keeps_every_id_and_reuses_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls))
    first = tmp_path / "first"
    data, source = _data(first / "data" / "target"), _data(first / "data" / "source")
    runs = plan(["target"], [0], _setting(first / "runs", data, source))
    execute(runs, log=lambda _: None)
    assert calls
    moved = tmp_path / "moved" / "here"
    moved.parent.mkdir()
    shutil.move(first, moved)
    again = plan(
        ["target"], [0], _setting(moved / "runs", moved / "data/target", moved / "data/source")
    )
    assert [r.run_id for r in again] == [r.run_id for r in runs]
    calls.clear()
    lines: list[str] = []
    execute(again, log=lines.append)
    assert calls == [] and all("(reused;" in line for line in lines[:-1])
    # the run record says what made it without a path of the data
    record = json.loads((again[-1].directory / "run.json").read_text())
    assert {"id", "config_id", "code", "version", "revision"} <= set(record)
    assert str(tmp_path) not in json.dumps(record["setting"])


def test_a_profile_field_no_config_of_a_run_reads_leaves_its_id(tmp_path: Path) -> None:
    setting = _setting(tmp_path, tmp_path / "d", tmp_path / "s")
    base = {r.key: r.run_id for r in plan(["target", "spl"], [0], setting)}
    translation = Setting(
        setting.profile, setting.dataset, (*setting.overrides, "--profile.epochs_translation=7"),
        run_root=setting.run_root,
    )  # fmt: skip
    changed = {r.key: r.run_id for r in plan(["target", "spl"], [0], translation)}
    assert changed[("target", 0)] == base[("target", 0)]  # F2 does not read it
    assert changed[("spl", 0)] != base[("spl", 0)]  # SPL's adaptation does


def test_new_code_is_reported_and_rerun_or_kept_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls))
    setting = _setting(tmp_path, tmp_path / "d", tmp_path / "s")
    runs = plan(["target"], [0], setting)
    execute(runs, log=lambda _: None)
    # one line of the auxiliary stage's code changed: its digest (and those downstream) differ
    real = plan_module.code_digest

    def edited(class_paths: Any) -> str:
        paths = list(class_paths)
        suffix = "-edited" if any("AuxiliaryDistillation" in p for p in paths) else ""
        return real(paths) + suffix

    monkeypatch.setattr(plan_module, "code_digest", edited)
    new = plan(["target"], [0], setting)
    changed = {r.method.name for r, old in zip(new, runs, strict=True) if r.run_id != old.run_id}
    assert changed == {"aux_opt", "aux_sar", "target"}
    assert [r.config_id for r in new] == [r.config_id for r in runs]
    # --reuse-stale keeps them and lists them
    calls.clear()
    lines: list[str] = []
    execute(new, log=lines.append, reuse_stale=True)
    assert calls == []
    assert sum("made by other code" in line and "kept" in line for line in lines) == 3
    assert {r.method.name for r in execute_module.stale_runs(new)} == changed
    # by default they are reported and trained again, and nothing else is
    lines.clear()
    execute(new, log=lines.append)
    assert {_folder(c).name for c in calls if c[3] == "fit"} == changed
    assert sum("made by other code" in line and "re-running" in line for line in lines) == 3
    assert execute_module.stale_runs(new) == []


def test_a_failed_setup_does_not_block_its_corrected_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls))
    runs = plan(["source_pretrain"], [0], _setting(tmp_path, tmp_path / "d", tmp_path / "s"))
    # a run of another configuration whose setup failed: its record, no checkpoint
    write_json(runs[0].directory / "run.json", {"id": "0ld", "config_id": "0ld"})
    execute(runs, log=lambda _: None)
    assert len(calls) == 1 and runs[0].checkpoint.is_file()
    # a folder holding another configuration's *trained* run is still refused
    write_json(runs[0].directory / "run.json", {"id": "0ld", "config_id": "0ld"})
    with pytest.raises(execute_module.RunnerError, match="another configuration"):
        execute(runs, log=lambda _: None)


def test_two_runners_on_one_folder_train_each_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    fake = _fake_cloudxfer(calls)

    def slow(args: list[str], env: Any = None) -> int:
        time.sleep(0.2)  # both runners reach each run while the other one trains it
        return int(fake(args, env=env))

    monkeypatch.setattr(execute_module, "launch", slow)
    runs = plan(["aux_opt"], [0], _setting(tmp_path, tmp_path / "d", tmp_path / "s"))
    logs: list[list[str]] = [[], []]
    threads = [
        threading.Thread(target=execute, args=(runs,), kwargs={"log": logs[i].append})
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fits = [_folder(c).name for c in calls if c[3] == "fit"]
    assert sorted(fits) == sorted(r.method.name for r in runs)  # each once
    assert any("another runner holds" in line for log in logs for line in log)
    assert not any(list((r.directory).glob(".run.lock*")) for r in runs)  # released


def test_a_prepared_data_file_enters_ids_by_content_not_its_paths(tmp_path: Path) -> None:
    """Moving prepared data (or preparing it into another file) keeps the target runs' ids."""

    def data_file(folder: Path, name: str, comment: str) -> Path:
        path = tmp_path / name
        path.write_text(
            f"# {comment}\n"
            "class_path: datamodules.Sen12msCloudDataModule\n"
            f"init_args:\n  root: {folder}\n  patches_file: {folder / 'patches.csv'}\n"
            "  tile_size: 64\n"
        )
        return path

    first = _data(tmp_path / "a" / "sen12ms")
    (first / "patches.csv").write_text("patch,split\np0,train\n")
    source = _data(tmp_path / "source")

    def sl_id(dataset: Path) -> str:
        setting = Setting(
            profile=profile_path("smoke"),
            dataset=dataset,
            overrides=(f"--profile.source_root={source}",),
            run_root=lambda seed: tmp_path / "out" / f"seed{seed}",
        )
        return next(r.run_id for r in plan(["sl"], [0], setting) if r.method.name == "sl")

    before = sl_id(data_file(first, "DATA.yaml", "command: prepare --root a"))
    moved = tmp_path / "b" / "elsewhere"
    moved.parent.mkdir()
    shutil.move(first, moved)
    assert sl_id(data_file(moved, "OTHER.yaml", "command: prepare --root b")) == before
    (moved / "patches.csv").write_text("patch,split\np0,test\n")  # other data: another id
    assert sl_id(data_file(moved, "OTHER.yaml", "command: prepare --root b")) != before
