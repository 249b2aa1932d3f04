"""The runner: graph resolution, ids, reuse, resume, re-runs, refusal, --print-commands, tables."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from cloudxfer.chain import main as chain_main
from cloudxfer.checkpoints import METADATA_KEY, read_metadata
from cloudxfer.reporting.tables import collect, format_markdown, format_paper_table, write_csv
from cloudxfer.runner import METHODS, RunnerError, Setting, execute, plan, upstream_closure
from cloudxfer.runner import executor as execute_module
from cloudxfer.runner.cli import data_description, prepare_data
from cloudxfer.runner.cli import main as run_main
from cloudxfer.runner.methods import TABLES, Method
from cloudxfer.runner.plan import METRICS, profile_path
from cloudxfer.sim.record import SIMULATION_RECORD
from datamodules.errors import DataError
from datamodules.runfiles import write_json


def _setting(tmp_path: Path, *overrides: str) -> Setting:
    return Setting(
        profile=profile_path("smoke"),
        dataset="sen12ms_cloud",
        overrides=overrides,
        run_root=lambda seed: tmp_path / f"seed{seed}",
    )


def test_upstream_closure_orders_dependencies_first() -> None:
    order = upstream_closure(["target_noirm", "aux_sar"])
    assert order == ["source_pretrain", "source_finetune", "aux_opt", "aux_sar", "target_noirm"]
    for name in order:
        needed = [up for _, up in METHODS[name].needs]
        assert all(order.index(up) < order.index(name) for up in needed)


def test_upstream_closure_rejects_unknown_and_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        upstream_closure(["nope"])
    loop = {
        "a": Method("a", (Path("a.yaml"),), needs=(("model.init_args.teacher", "b"),)),
        "b": Method("b", (Path("b.yaml"),), needs=(("model.init_args.teacher", "a"),)),
    }
    monkeypatch.setattr("cloudxfer.runner.methods.METHODS", loop)
    with pytest.raises(ValueError, match="cycle"):
        upstream_closure(["a"])


def test_plan_shares_upstream_runs_per_seed_and_ids_are_stable(tmp_path: Path) -> None:
    runs = plan(["target", "target_noirm"], [0, 1], _setting(tmp_path))
    # f_pre once (a pre-trained model, at the first seed); f_S, two F1 and two rows per seed
    assert len(runs) == 1 + 2 * 5
    keys = [r.key for r in runs]
    assert len(set(keys)) == len(keys) and ("source_pretrain", 1) not in keys
    again = plan(["target", "target_noirm"], [0, 1], _setting(tmp_path))
    assert [r.run_id for r in runs] == [r.run_id for r in again]
    by_key = {r.key: r for r in runs}
    target, noirm = by_key[("target", 0)], by_key[("target_noirm", 0)]
    assert target.upstream == noirm.upstream  # the same F1 and f_S runs feed both rows
    pretrain = by_key[("source_pretrain", 0)]
    assert by_key[("source_finetune", 1)].upstream == (pretrain,)  # seed 1 reads seed 0's f_pre
    assert by_key[("source_finetune", 1)].run_id != by_key[("source_finetune", 0)].run_id
    assert target.run_id != noirm.run_id and target.run_id != by_key[("target", 1)].run_id
    assert f"--model.init_args.teacher_opt={by_key[('aux_opt', 0)].checkpoint}" in target.fit_args
    # an ablation: its base method's YAML, then its own
    configs = [noirm.fit_args[i + 1] for i, a in enumerate(noirm.fit_args) if a == "--config"]
    assert [Path(c).name for c in configs[1:]] == ["target.yaml", "target_noirm.yaml"]
    # an override changes every id downstream of it, a seed only its own runs
    other = {r.key: r for r in plan(["target"], [0], _setting(tmp_path, "--trainer.x=1"))}
    assert all(other[k].run_id != by_key[k].run_id for k in other)


def _folder(args: list[str]) -> Path:
    """The run folder a fit/test command writes to."""
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith("--trainer.default_root_dir=")]
    return Path(value)


def _fake_cloudxfer(calls: list[list[str]], fail: set[str] | None = None) -> Any:
    """Stand-in for the runner's fit/test launches: write what the real ones would write."""

    def run(args: list[str], env: Any = None) -> int:
        calls.append(args)
        options = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
        folder = Path(options["--trainer.default_root_dir"])
        name = folder.name
        if fail and name in fail:
            return 1
        if args[3] == "fit":
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
            stage = METHODS[name].stage
            for name in ("last.ckpt", "best.ckpt"):
                torch.save(
                    {"state_dict": {}, METADATA_KEY: {"stage": stage}},
                    folder / "checkpoints" / name,
                )
        else:
            (folder / "test").mkdir(parents=True, exist_ok=True)
            seed = int(options["--profile.seed"])
            metrics = {
                "oa": 0.5 + 0.1 * seed,
                "aa": 0.4,
                "kappa": 0.3,
                "n": 10,
                "n_cloudy": 4,
                "n_clear": 6,
            }
            (folder / "test" / "metrics.json").write_text(json.dumps(metrics))
        return 0

    return run


def test_execute_runs_in_order_then_reuses_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls))
    runs = plan(["target"], [0], _setting(tmp_path))
    lines: list[str] = []
    results = execute(runs, log=lines.append)
    assert [_folder(c).name for c in calls if c[3] == "fit"] == [r.method.name for r in runs]
    # a first fit starts afresh in its own (claimed) folder
    assert all(c[-1] == "--overwrite=true" for c in calls if c[3] == "fit")
    assert results[("target", 0)] == pytest.approx(
        {"oa": 0.5, "aa": 0.4, "kappa": 0.3, "n": 10, "n_cloudy": 4, "n_clear": 6}
    )
    assert results[("source_pretrain", 0)] is None
    assert any("target seed 0: OA 50.00  AA 40.00  Kappa 0.300" in line for line in lines)
    # a finished fit keeps its result and drops the checkpoint only a resume would read
    assert all(r.checkpoint.is_file() and not r.resume_checkpoint.exists() for r in runs)
    # finished runs are reused without a subprocess
    calls.clear()
    lines.clear()
    execute(runs, log=lines.append)
    assert calls == [] and all("(reused;" in line for line in lines[:-1])
    # an interrupted run (no done marker, a last.ckpt) resumes from its checkpoint
    (runs[-1].directory / "stage_done.json").unlink()
    shutil.copy(runs[-1].checkpoint, runs[-1].resume_checkpoint)
    execute(runs, log=lines.append)
    assert len(calls) == 2  # fit of the target run, then its test
    assert calls[0][-1] == f"--ckpt_path={runs[-1].resume_checkpoint}"
    assert runs[-1].resume_checkpoint.name == "last.ckpt"
    assert runs[-1].checkpoint.name == "best.ckpt"
    # --keep-last: a finished fit keeps it
    (runs[-1].directory / "stage_done.json").unlink()
    execute(runs, log=lines.append, keep_last=True)
    assert runs[-1].resume_checkpoint.is_file()


def test_an_unreadable_checkpoint_is_reported_and_its_run_fitted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls))
    runs = plan(["target"], [0], _setting(tmp_path))
    execute(runs, log=lambda _: None)
    by_name = {r.method.name: r for r in runs}
    # a finished run's result truncated: reported with its path, fitted again from scratch
    # (not resumed from the last.ckpt that ended it) and tested again; the rest is reused
    aux = by_name["aux_opt"].checkpoint
    aux.write_bytes(aux.read_bytes()[:100])
    calls.clear()
    lines: list[str] = []
    execute(runs, log=lines.append)
    assert [(_folder(c).name, c[3]) for c in calls] == [("aux_opt", "fit"), ("aux_opt", "test")]
    assert calls[0][-1] == "--overwrite=true"
    (line,) = [x for x in lines if " is unreadable (" in x]
    assert line.startswith(f"aux_opt seed 0: checkpoint {aux} is unreadable (not a readable ")
    assert line.endswith("); re-running") and "\n" not in line
    assert read_metadata(aux)["stage"] == "auxiliary"  # the new fit's result
    # a finished run's result gone: the same
    by_name["source_pretrain"].checkpoint.unlink()
    calls.clear()
    lines.clear()
    execute(runs, log=lines.append)
    assert [(_folder(c).name, c[-1]) for c in calls] == [("source_pretrain", "--overwrite=true")]
    pre = by_name["source_pretrain"].checkpoint
    assert f"source_pretrain seed 0: checkpoint {pre} is missing; re-running" in lines
    # ... or of another stage
    torch.save({"state_dict": {}, METADATA_KEY: {"stage": "target"}}, aux)
    lines.clear()
    execute(runs, log=lines.append)
    other = f"aux_opt seed 0: checkpoint {aux} is from stage 'target', not 'auxiliary'"
    assert f"{other}; re-running" in lines
    # an interrupted run whose last.ckpt is damaged: not resumed from it, started again
    target = by_name["target"]
    (target.directory / "stage_done.json").unlink()
    target.resume_checkpoint.write_bytes(b"not a checkpoint")
    calls.clear()
    lines.clear()
    execute(runs, log=lines.append)
    assert [c[3] for c in calls] == ["fit", "test"] and calls[0][-1] == "--overwrite=true"
    assert not any(a.startswith("--ckpt_path=") for a in calls[0])
    (line,) = [x for x in lines if " is unreadable (" in x]
    assert line.startswith(f"target seed 0: checkpoint {target.resume_checkpoint} is unreadable (")
    assert line.endswith("); starting again instead of resuming")
    # the chain sits on the same runner: it reports and re-runs the same way
    monkeypatch.setattr("cloudxfer.reporting.curves.plot_loss_curves", lambda *a: tmp_path)
    monkeypatch.setattr(
        "cloudxfer.reporting.convergence.convergence_figure", lambda *a: (tmp_path, tmp_path)
    )
    out = tmp_path / "chain"
    chain = ["--profile", "smoke", "--out", str(out), "--no-compare"]
    # what the chain checks before any run: a target root with its labels, a source folder
    (out / "data" / "target").mkdir(parents=True)
    (out / "data" / "target" / "labels.csv").write_text("patch,label\n")
    for name in ("a", "b"):
        (out / "data" / "source" / name).mkdir(parents=True)
    assert chain_main(chain) == 0
    f_s = out / "runs" / "source_finetune" / "checkpoints" / "best.ckpt"
    f_s.write_bytes(f_s.read_bytes()[:-10])
    calls.clear()
    capsys.readouterr()
    assert chain_main(chain) == 0
    assert [(_folder(c).name, c[3]) for c in calls] == [
        ("source_finetune", "fit"), ("source_finetune", "test")
    ]  # fmt: skip
    (line,) = [x for x in capsys.readouterr().out.splitlines() if " is unreadable (" in x]
    assert line.startswith(f"source_finetune seed 0: checkpoint {f_s} is unreadable (")
    assert line.endswith("); re-running")


def test_execute_refuses_a_folder_of_another_configuration_and_reports_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls))
    execute(plan(["aux_opt"], [0], _setting(tmp_path)), log=lambda _: None)
    changed = plan(["aux_opt"], [0], _setting(tmp_path, "--trainer.max_epochs=3"))
    with pytest.raises(RunnerError, match="source_pretrain: holds run .* of another configuration"):
        execute(changed, log=lambda _: None)
    record = tmp_path / "seed0" / "source_pretrain" / "run.json"
    kept = record.read_text()
    record.unlink()  # a folder of unknown origin: a checkpoint, no record
    with pytest.raises(RunnerError, match="holds a checkpoint but no run record"):
        execute(changed, log=lambda _: None)
    record.write_text(kept)
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls, fail={"aux_sar"}))
    with pytest.raises(RunnerError, match=r"aux_sar \(seed 0\) failed with exit code 1"):
        execute(plan(["aux_sar"], [0], _setting(tmp_path)), log=lambda _: None)


def test_execute_side_by_side_keeps_dependency_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls))
    runs = plan(["target", "target_noirm"], [0, 1], _setting(tmp_path))
    execute(runs, jobs=3, log=lambda _: None)
    fitted = [_folder(c) for c in calls if c[3] == "fit"]
    for run in runs:
        for up in run.upstream:
            assert fitted.index(up.directory) < fitted.index(run.directory)


def test_tables_average_seeds_from_files_and_refuse_mixed_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer([]))
    runs = plan(["target"], [0, 1], _setting(tmp_path))
    execute(runs, log=lambda _: None)
    tested = [r.directory for r in runs if r.method.name == "target"]
    (row,) = collect(tested)
    assert row.seeds == (0, 1)
    mean, std = row.mean_std("oa")  # type: ignore[misc]
    assert mean == pytest.approx(0.55) and std == pytest.approx(0.0707107, rel=1e-5)
    table = format_markdown([row])
    assert "| F2 target, IRM (opt & SAR) | 55.00 ± 7.07 | 40.00 ± 0.00 | 0.300 ± 0.000 |" in table
    with write_csv([row], tmp_path / "t.csv").open() as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["method"], line["n_seeds"], line["seeds"]) == ("target", "2", "0 1")
    assert float(line["OA"]) == pytest.approx(0.55) and line["paper OA"] == ""
    layout = TABLES["table1"]
    paper = format_paper_table([row], layout)
    assert "| Opt | SPL | not run |" in paper and "| 42.54 | 47.17 | 0.356 |" in paper
    assert "| Opt & SAR | Ours (F2, IRM) | 55.00 ± 7.07 |" in paper
    assert paper.index("| Finetune |") < paper.index("| KD-S |") < paper.index("| Ours (F2")
    # a run of another set of overrides, profile or data set never joins the table
    base = _setting(tmp_path / "o")
    others = {
        "overrides": _setting(tmp_path / "o", "--trainer.max_epochs=3"),
        "profile": Setting(base.profile.with_name("quick.yaml"), base.dataset,
                           run_root=lambda seed: tmp_path / "q" / f"seed{seed}"),
        "data set": Setting(base.profile, "cloudy_pairs",
                            run_root=lambda seed: tmp_path / "h" / f"seed{seed}"),
    }  # fmt: skip
    for what, setting in others.items():
        other = plan(["target"], [2], setting)
        execute(other, log=lambda _: None)
        with pytest.raises(ValueError, match="one table holds one profile, data set and") as err:
            collect([*tested, other[-1].directory])
        assert str(other[-1].directory) in str(err.value), what


def test_print_commands_lists_fit_and_test_in_dependency_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--out",
        str(tmp_path),
        "--profile",
        "smoke",
        "--methods",
        "aux_sar",
        "--print-commands",
    ]
    assert run_main(argv) == 0
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("python -m cloudxfer")]
    assert [c.split()[3] for c in commands] == ["fit", "fit", "test", "fit", "test"]
    assert "source_pretrain.yaml" in commands[0] and "aux_sar.yaml" in commands[-1]
    assert not (tmp_path / "seed0").exists()  # nothing ran


def test_another_data_set_reuses_the_method_configs_with_its_own_data_file(
    tmp_path: Path,
) -> None:
    hunan = Setting(
        profile=profile_path("smoke"),
        dataset="cloudy_pairs",
        run_root=lambda seed: tmp_path / f"seed{seed}",
    )
    (_, run) = plan(["sl"], [0], hunan)  # the source pre-training starts SL's network
    assert run.method.name == "sl" and run.upstream[0].method.name == "source_pretrain"
    args = list(run.fit_args)
    method_config = args.index("--config", args.index("--config") + 1) + 1
    assert args[method_config].endswith("experiments/methods/sl.yaml")
    # the data-set file after the method's config
    assert args[method_config + 1] == f"--data={hunan.dataset}"
    assert hunan.dataset.name == "cloudy_pairs.yaml"
    (_, same) = plan(["sl"], [0], _setting(tmp_path))
    assert f"--data={same.setting.dataset}" in same.fit_args
    assert same.setting.dataset.name == "sen12ms_cloud.yaml"
    assert same.run_id != run.run_id  # its data-set file is part of the id


def test_a_table_refuses_another_data_set_or_source_role(tmp_path: Path) -> None:
    # table3 on the SEN12MS data file; table2 with an NWPU-role --source-role
    for args in (["--table", "table3"], ["--table", "table2", "--source-role", "nwpu"]):
        with pytest.raises((SystemExit, DataError)):
            run_main([*args, "--out", str(tmp_path), "--print-commands"])


@pytest.mark.slow
def test_a_row_runs_end_to_end_on_the_hunan_style_set(tmp_path: Path) -> None:
    args = ["--dataset", "cloudy_pairs", "--methods", "sl", "--profile", "smoke", "--synth"]
    assert run_main([*args, "--pairs", "300", "--per-class", "4", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "seed0" / "sl" / METRICS).read_text())
    assert metrics["class_names"][-3:] == ["Transitional Woodland", "Village", "Water"]
    assert metrics["n"] == 60 and metrics["n_cloudy"] + metrics["n_clear"] <= 60
    table = (tmp_path / "table.md").read_text()
    assert "SL (opt & SAR)" in table
    # what made the table: in table.md's header and in every line of table.csv alike
    with (tmp_path / "table.csv").open() as handle:
        (line,) = list(csv.DictReader(handle))
    for key in ("Command", "Revision", "Profile", "Protocol", "Data", "Seeds"):
        assert f"{key}: {line[key]}\n" in table
    assert line["Protocol"].startswith("students start from source pre-training of their")
    assert "selection: last epoch" in line["Protocol"]
    assert line["Command"].startswith("cloudxfer run --dataset cloudy_pairs --methods sl")
    assert f"data_root {tmp_path / 'data' / 'target'} (simulated (target: " in line["Data"]
    assert "scheme hunan, seed 0)" in line["Data"] and line["Seeds"] == "0"
    # under the table: the criterion, then each run's verdict (one smoke epoch proves nothing)
    verdicts = table[table.index("\nConvergence (") :].splitlines()[2:]
    assert [v.split(":")[0] for v in verdicts] == ["source_pretrain seed 0", "sl seed 0"]
    verdict = verdicts[1]  # SL's network starts from the source pre-training (init: source)
    assert re.fullmatch(
        r"sl seed 0: final train loss \d+\.\d{4}, 1 epochs, held-out loss \d+\.\d{4} at the "
        r"end \(lowest \d+\.\d{4} at epoch 1\), too few epochs to judge, handed-on learning "
        r"rate \d+\.\d% of peak, converged: NO",
        verdict,
    ), verdict


def test_stage_overrides_reach_one_method_and_the_ids_downstream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {r.key: r for r in plan(["target"], [0], _setting(tmp_path))}
    setting = Setting(
        profile=profile_path("smoke"),
        dataset="sen12ms_cloud",
        stage_overrides=(("aux_sar", "--trainer.max_epochs=3"),),
        run_root=lambda seed: tmp_path / f"seed{seed}",
    )
    runs = {r.key: r for r in plan(["target"], [0], setting)}
    assert "--trainer.max_epochs=3" in runs[("aux_sar", 0)].fit_args
    assert not any("max_epochs=3" in a for a in runs[("aux_opt", 0)].fit_args)
    assert runs[("aux_opt", 0)].run_id == base[("aux_opt", 0)].run_id
    assert runs[("aux_sar", 0)].run_id != base[("aux_sar", 0)].run_id
    assert runs[("target", 0)].run_id != base[("target", 0)].run_id  # it reads aux_sar
    # through the command line: --stage.<method>.<key>=<value>
    out = str(tmp_path / "t")
    assert run_main(["--methods", "sl", "--out", out, "--print-commands",
                     "--stage.sl.trainer.max_epochs=3"]) == 0  # fmt: skip
    assert "--trainer.max_epochs=3" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_main(["--methods", "sl", "--out", out, "--print-commands", "--stage.nope.x=1"])


def _shared_setting(tmp_path: Path, name: str, dataset: str, *overrides: str) -> Setting:
    return Setting(
        profile=profile_path("smoke"),
        dataset=dataset,
        overrides=("--profile.source_root=/data/source", *overrides),
        run_root=lambda seed: tmp_path / name / f"seed{seed}",
        share_dir=tmp_path / "shared",
    )


def test_source_domain_runs_share_a_key_across_target_data(tmp_path: Path) -> None:
    def keys(setting: Setting, seed: int = 0) -> dict[str, str | None]:
        runs = plan(["spl", "cycit", "target"], [seed], setting)
        return {r.method.name: r.share_key for r in runs}

    table1 = keys(_shared_setting(tmp_path, "t1", "sen12ms_cloud", "--profile.data_root=/a"))
    # what reads no target data: the source pre-training and SPL's restorer, nothing else
    assert {name for name, key in table1.items() if key} == {"source_pretrain", "spl_pretrain"}
    # another target data set, data root or cloudy share (Table III, Fig. 9): the same keys
    for other in (
        _shared_setting(tmp_path, "t3", "cloudy_pairs", "--profile.data_root=/hunan"),
        _shared_setting(tmp_path, "f9", "sen12ms_cloud", "--profile.data_root=/a",
                        "--data.init_args.clouds.cloudy_share=0.1",
                        "--data.init_args.clouds.masks_dir=/masks"),
    ):  # fmt: skip
        assert keys(other) == table1
    # what the source runs do read changes them: source data (by content), trainer, profile,
    # seed
    for name, content in (("nwpu", b"a"), ("aid", b"bb")):
        (tmp_path / name / "class").mkdir(parents=True)
        (tmp_path / name / "class" / "x.jpg").write_bytes(content)
    nwpu = keys(_shared_setting(tmp_path, "x", "sen12ms_cloud",
                                f"--profile.source_root={tmp_path / 'nwpu'}"))  # fmt: skip
    assert nwpu["source_pretrain"] != table1["source_pretrain"]  # data, not its absence
    for changed in (
        keys(
            _shared_setting(
                tmp_path, "x", "sen12ms_cloud", f"--profile.source_root={tmp_path / 'aid'}"
            )
        ),  # fmt: skip
        keys(_shared_setting(tmp_path, "x", "sen12ms_cloud", "--trainer.max_epochs=3")),
        keys(_shared_setting(tmp_path, "x", "sen12ms_cloud", "--profile.batch_size=3")),
        keys(_shared_setting(tmp_path, "x", "sen12ms_cloud"), seed=1),
    ):
        assert changed["source_pretrain"] not in (
            table1["source_pretrain"],
            nwpu["source_pretrain"],
        )
        assert changed["spl_pretrain"] != table1["spl_pretrain"]
    # a profile field a run does not read leaves its id: SPL's restorer has its own lr
    lr = keys(_shared_setting(tmp_path, "x", "sen12ms_cloud", "--profile.lr=0.1"))
    assert lr["spl_pretrain"] == table1["spl_pretrain"]
    assert lr["source_pretrain"] != table1["source_pretrain"]
    # a source run's id is its share key; a run reading target data differs per data set
    t1 = plan(["source_finetune"], [0], _shared_setting(tmp_path, "t1", "sen12ms_cloud"))
    t3 = plan(["source_finetune"], [0], _shared_setting(tmp_path, "t3", "cloudy_pairs"))
    assert t1[0].run_id == t3[0].run_id == t1[0].share_key == t3[0].share_key
    assert t1[1].run_id != t3[1].run_id and t1[1].share_key is None


def test_a_finished_source_run_is_copied_from_the_share_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer(calls))
    first = plan(["source_finetune"], [0], _shared_setting(tmp_path, "t1", "sen12ms_cloud"))
    execute(first, log=lambda _: None)
    pretrain = first[0]
    assert pretrain.shared_directory is not None
    shared = pretrain.shared_directory
    assert shared.parent == tmp_path / "shared"
    assert shared.name == f"source_pretrain-{pretrain.share_key}"
    assert (shared / "checkpoints" / "best.ckpt").read_bytes() == pretrain.checkpoint.read_bytes()
    record = json.loads((shared / "shared.json").read_text())
    assert record["share_key"] == pretrain.share_key
    assert record["trained_in"] == str(pretrain.directory)
    # another table: its source pre-training is copied, not fitted; its f_S is fitted
    calls.clear()
    lines: list[str] = []
    other = plan(["source_finetune"], [0], _shared_setting(tmp_path, "t3", "cloudy_pairs"))
    execute(other, log=lines.append)
    assert [(_folder(c).name, c[3]) for c in calls] == [
        ("source_finetune", "fit"), ("source_finetune", "test")
    ]  # fmt: skip
    assert f"(shared from {shared}; {other[0].directory})" in lines[0]
    assert other[0].checkpoint.read_bytes() == pretrain.checkpoint.read_bytes()
    assert json.loads((other[0].directory / "run.json").read_text())["id"] == other[0].run_id
    # run again: reused from its own folder now
    calls.clear()
    lines.clear()
    execute(other, log=lines.append)
    assert calls == [] and "(reused;" in lines[0]
    # a damaged shared copy is reported and not used; the run is fitted and the copy replaced
    (shared / "checkpoints" / "best.ckpt").write_bytes(b"damaged")
    lines.clear()
    level = _shared_setting(
        tmp_path, "f9", "sen12ms_cloud", "--data.init_args.clouds.cloudy_share=0.1"
    )
    third = plan(["source_finetune"], [0], level)
    execute(third, log=lines.append)
    assert ("source_pretrain", "fit") in [(_folder(c).name, c[3]) for c in calls]
    assert any("shared copy not used: checkpoint" in x and "is unreadable" in x for x in lines)
    assert read_metadata(shared / "checkpoints" / "best.ckpt")["stage"] == "source_pretrain"
    assert not list((tmp_path / "shared").glob(".*"))  # no staging folder left behind


def test_a_copy_published_meanwhile_by_another_runner_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execute_module, "launch", _fake_cloudxfer([]))
    first = plan(["source_finetune"], [0], _shared_setting(tmp_path, "t1", "sen12ms_cloud"))
    execute(first, log=lambda _: None)
    shared = first[0].shared_directory
    assert shared is not None and (shared / "shared.json").is_file()
    theirs = tmp_path / "theirs"
    shutil.copytree(shared, theirs)
    # this runner's own finished run of the same key, about to be published
    other = plan(["source_finetune"], [0], _shared_setting(tmp_path, "t3", "cloudy_pairs"))
    shutil.copytree(first[0].directory, other[0].directory)
    real_copy, real_replace = execute_module._shared_copy, os.replace
    checks: list[int] = []

    def first_check_finds_none(run: Any, log: Any) -> Path | None:
        checks.append(1)
        return None if len(checks) == 1 else real_copy(run, log)

    def landed_first(src: Any, dst: Any) -> None:
        if Path(dst) != shared:
            real_replace(src, dst)
            return
        shutil.copytree(theirs, shared)  # the other runner's rename came first
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(execute_module, "_shared_copy", first_check_finds_none)
    monkeypatch.setattr(execute_module.os, "replace", landed_first)
    execute_module._publish(other[0])  # their usable copy is kept, nothing raised
    assert json.loads((shared / "shared.json").read_text())["trained_in"] == str(first[0].directory)
    assert not list(shared.parent.glob(".*"))  # no staging folder left
    # and when no usable copy is there after all, the failure is not hidden
    shutil.rmtree(shared)
    monkeypatch.setattr(execute_module, "_shared_copy", lambda run, log: None)
    with pytest.raises(OSError, match="Directory not empty"):
        execute_module._publish(other[0])
    assert not list(shared.parent.glob(".*"))


def test_synth_refuses_data_simulated_with_other_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, source = tmp_path / "data" / "target", tmp_path / "data" / "source"
    made = {"generator": "target", "scheme": "sen12ms_cloud", "pairs": 300, "seed": 0}
    for folder, record in ((target, made), (source, {"generator": "source", "role": "nwpu",
                                                     "per_class": 8, "seed": 0})):  # fmt: skip
        folder.mkdir(parents=True)
        write_json(folder / SIMULATION_RECORD, {**record, "patch_size": 64})
    argv = ["--out", str(tmp_path), "--profile", "smoke", "--methods", "sl", "--synth",
            "--pairs", "300", "--per-class", "8"]  # fmt: skip
    for extra, made_with, asked in (
        (["--seed", "1"], "seed 0", "seed 1"),
        (["--pairs", "400"], "pairs 300", "pairs 400"),
    ):
        with pytest.raises(SystemExit) as stop:
            run_main([*argv, *extra])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"{target}: simulated with {made_with}, but --synth asks for {asked}" in err
    assert [p.name for p in target.iterdir()] == [SIMULATION_RECORD]  # nothing written there
    # the same settings reuse both folders as they are, and the table says how they were made
    args = argparse.Namespace(data_root=None, source_root=None, synth=True, print_commands=False,
                              dataset="sen12ms_cloud", pairs=300, per_class=8, seed=0,
                              source_role="nwpu")  # fmt: skip
    assert prepare_data(args, tmp_path) == (target, source)
    setting = Setting(profile_path("smoke"), "sen12ms_cloud",
                      overrides=(f"--profile.data_root={target}",
                                 f"--profile.source_root={source}"))  # fmt: skip
    assert data_description(setting) == (
        f"data_root {target} (simulated (target: pairs 300, patch_size 64, scheme "
        f"sen12ms_cloud, seed 0)); source_root {source} (simulated (source: patch_size 64, "
        "per_class 8, role nwpu, seed 0))"
    )
    real = (f"--profile.data_root={tmp_path}", "--profile.source_root=/x")
    other = Setting(profile_path("smoke"), "sen12ms_cloud", overrides=real)
    assert "no simulation record: data on disk" in data_description(other)
