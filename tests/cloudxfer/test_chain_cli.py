"""End-to-end: the real CLI (`chain`, `fit`, `test`, `predict`, `plot`) on simulated GeoTIFFs."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from cloudxfer.checkpoints import CheckpointError, load_frozen_model, read_metadata
from cloudxfer.runner import METHODS, Setting, execute, plan
from cloudxfer.runner import methods as methods_module
from cloudxfer.runner.methods import register
from cloudxfer.runner.plan import profile_path
from cloudxfer.sim import generate_source, generate_target
from tests.wandb_files import history, offline_runs, records, run_record

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
SMOKE = EXPERIMENTS / "profiles" / "smoke.yaml"
DATASET = EXPERIMENTS / "data" / "sen12ms_cloud.yaml"
CLASSES = [
    "Barren",
    "Dense Forests",
    "Herbaceous",
    "Industrial",
    "Residential",
    "Road",
    "Scrub",
    "Sparsely Built",
    "Water",
    "Harbor",
]


def cloudxfer(
    *args: str, check: bool = True, warnings: bool = False
) -> subprocess.CompletedProcess[str]:
    # this folder on the path: a run may load a test's callback (``KillAtEpoch``) by name
    paths = (str(Path(__file__).parent), os.environ.get("PYTHONPATH"))
    path = os.pathsep.join(p for p in paths if p)
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": path}
    env.pop("PYTHONWARNINGS", None)
    if not warnings:  # warnings=True: the run's warnings reach stderr as a user sees them
        env["PYTHONWARNINGS"] = "ignore"
    result = subprocess.run(
        [sys.executable, "-m", "cloudxfer", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"cloudxfer {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulate a small set (30+ pairs per class) and run the whole chain once, smoke-sized."""
    out = tmp_path_factory.mktemp("chain")
    generate_target(out / "data" / "target", pairs=300, seed=1)
    generate_source(out / "data" / "source", per_class=4, seed=1, size=64)
    result = cloudxfer("chain", "--profile", "smoke", "--out", str(out))
    (out / "chain_stdout.txt").write_text(result.stdout)
    (out / "chain_stderr.txt").write_text(result.stderr)
    return out


@pytest.fixture(scope="module")
def spl_restorer(chain_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SPL's restorer pre-trained on the chain's source images (smoke-sized), once."""
    out = tmp_path_factory.mktemp("spl_pretrain")
    cloudxfer("fit", *_stage_args(chain_run, "spl_pretrain"), f"--trainer.default_root_dir={out}")
    return out / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def cycit_translator(chain_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CycIT's CycleGAN pre-trained on the chain's target SAR and source images, once."""
    out = tmp_path_factory.mktemp("cycit_pretrain")
    cloudxfer(
        "fit", *_stage_args(chain_run, "cycit_pretrain"), f"--trainer.default_root_dir={out}",
    )  # fmt: skip
    return out / "checkpoints" / "best.ckpt"


def _stage_args(out: Path, stage: str) -> list[str]:
    """A method's fit arguments as the runner composes them: profile, method, data, card."""
    m = METHODS[stage]
    return [
        "--config",
        str(SMOKE),
        *(arg for path in m.configs for arg in ("--config", str(path))),
        *([f"--data={DATASET}"] if m.reads == "target" else []),
        f"--profile.run_root={out / 'runs'}",
        f"--profile.data_root={out / 'data' / 'target'}",
        f"--profile.source_root={out / 'data' / 'source'}",
    ]


@pytest.mark.slow
def test_chain_prints_table_and_writes_artefacts(chain_run: Path) -> None:
    stdout = (chain_run / "chain_stdout.txt").read_text()
    assert "| model | OA | AA | Kappa |" in stdout
    # quiet: no product tips from Lightning in a run's output
    assert "Tip:" not in stdout + (chain_run / "chain_stderr.txt").read_text()
    assert "F2 target, IRM (opt & SAR)" in stdout and "F2 target, no IRM" in stdout
    runs = chain_run / "runs"
    for stage in ("source_finetune", "aux_opt", "aux_sar", "target", "target_noirm"):
        metrics = json.loads((runs / stage / "test" / "metrics.json").read_text())
        for key in ("oa", "aa", "kappa", "oa_cloudy", "aa_cloudy", "kappa_cloudy"):
            assert key in metrics
        for key in ("oa_clear", "aa_clear", "kappa_clear", "n", "n_cloudy", "n_clear"):
            assert key in metrics
        assert metrics["n"] == metrics["n_cloudy"] + metrics["n_clear"]
        rows = list(csv.DictReader((runs / stage / "test" / "predictions.csv").open()))
        assert len(rows) == metrics["n"]
        assert {"id", "label", "pred", "cloud_fraction"} <= set(rows[0])
        # The table's OA is the share of correct rows in predictions.csv.
        correct = sum(r["label"] == r["pred"] for r in rows) / len(rows)
        assert metrics["oa"] == pytest.approx(correct)
    assert (chain_run / "loss_curves.png").stat().st_size > 10_000
    assert (chain_run / "convergence.png").stat().st_size > 10_000
    with (chain_run / "convergence.csv").open() as handle:
        curve_rows = list(csv.DictReader(handle))
    # one row per epoch of every fitted stage, as its training record holds them
    for stage in ("source_pretrain", "source_finetune", "aux_opt", "aux_sar", "target"):
        record = json.loads((runs / stage / "training.json").read_text())
        mine = [r for r in curve_rows if r["stage"] == stage]
        assert len(mine) == len(record["epochs"])
        assert float(mine[-1]["val_loss"]) == pytest.approx(record["epochs"][-1]["val"]["loss"])
    assert (chain_run / "results.md").read_text().startswith("| model |")
    split = list(csv.DictReader((runs / "target" / "split.csv").open()))
    labelled = [r for r in split if r["split"] == "labelled"]
    assert len(labelled) == 20 * len(CLASSES)
    assert json.loads((runs / "target" / "normalisation.json").read_text())


@pytest.mark.slow
def test_checkpoints_record_their_stage(chain_run: Path) -> None:
    runs = chain_run / "runs"
    expected = {
        "source_pretrain": ("source_pretrain", "opt"),
        "source_finetune": ("source_finetune", "opt"),
        "aux_opt": ("auxiliary", "opt"),
        "aux_sar": ("auxiliary", "sar"),
        "target": ("target", "opt+sar"),
    }
    for folder, (stage, modality) in expected.items():
        meta = read_metadata(runs / folder / "checkpoints" / "best.ckpt")
        assert (meta["stage"], meta["modality"]) == (stage, modality)
        if folder != "source_pretrain":
            assert meta["class_names"] == CLASSES
            assert meta["normalisation"]["standardisation"]["opt_mean"]


@pytest.mark.slow
def test_target_stage_logs_per_modality_losses_and_irm(chain_run: Path) -> None:
    rows = list(csv.DictReader((chain_run / "runs" / "target" / "metrics.csv").open()))
    logged = [r for r in rows if r.get("loss/opt")]
    assert logged
    for row in logged:
        rho_opt, rho_sar = float(row["irm/rho_opt"]), float(row["irm/rho_sar"])
        assert rho_opt * rho_sar == pytest.approx(1.0, rel=1e-4)
        for key in ("loss/sar", "loss/source", "irm/s_opt", "irm/s_sar"):
            assert row[key] != ""
    no_irm = list(csv.DictReader((chain_run / "runs" / "target_noirm" / "metrics.csv").open()))
    assert all(float(r["irm/rho_opt"]) == 1.0 for r in no_irm if r.get("irm/rho_opt"))
    aux = list(csv.DictReader((chain_run / "runs" / "aux_sar" / "metrics.csv").open()))
    kept = [float(r["pseudo/kept_share"]) for r in aux if r.get("pseudo/kept_share")]
    assert kept and all(0.0 <= k <= 1.0 for k in kept)


@pytest.mark.slow
def test_chain_resumes_by_skipping_complete_stages(chain_run: Path) -> None:
    result = cloudxfer("chain", "--profile", "smoke", "--out", str(chain_run), "--no-compare")
    lines = result.stdout.splitlines()
    for stage in ("source_pretrain", "source_finetune", "aux_opt", "aux_sar", "target"):
        (line,) = [x for x in lines if f"] {stage} seed 0:" in x]
        assert "(reused;" in line
    assert not any("target_noirm" in x for x in lines if x.startswith("["))


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["source_finetune", "aux_opt", "aux_sar", "target"])
def test_each_stage_fast_dev_run(chain_run: Path, tmp_path: Path, stage: str) -> None:
    args = _stage_args(chain_run, stage)
    result = cloudxfer(
        "fit", *args, "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}"
    )
    assert result.returncode == 0
    assert (tmp_path / "split.csv").is_file()


@pytest.mark.slow
def test_source_pretrain_fast_dev_run(chain_run: Path, tmp_path: Path) -> None:
    args = _stage_args(chain_run, "source_pretrain")
    cloudxfer("fit", *args, "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}")
    assert (tmp_path / "split.csv").is_file()


@pytest.mark.slow
def test_predict_writes_predictions(chain_run: Path, tmp_path: Path) -> None:
    ckpt = chain_run / "runs" / "target" / "checkpoints" / "best.ckpt"
    args = _stage_args(chain_run, "target")
    cloudxfer("predict", *args, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}")
    rows = list(csv.DictReader((tmp_path / "predict" / "predictions.csv").open()))
    test_rows = list(
        csv.DictReader((chain_run / "runs" / "target" / "test" / "predictions.csv").open())
    )
    assert [r["id"] for r in rows] == [r["id"] for r in test_rows]
    assert [r["pred"] for r in rows] == [r["pred"] for r in test_rows]


@pytest.mark.slow
def test_testing_a_checkpoint_of_an_early_stopped_fit_is_quiet(
    chain_run: Path, tmp_path: Path
) -> None:
    args = _stage_args(chain_run, "aux_sar")
    fit_dir = tmp_path / "fit"
    # a fit with early stopping (as the quick profile's): its last.ckpt carries its state
    cloudxfer(
        "fit", *args, "--profile.patience=1", "--model.init_args.scheduler=plateau",
        f"--trainer.default_root_dir={fit_dir}",
    )  # fmt: skip
    last = fit_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)["callbacks"]
    assert any(key.startswith("EarlyStopping") for key in state)
    # the result (best.ckpt) is weights and records only: no optimiser or loop state
    best = torch.load(fit_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert "state_dict" in best and "optimizer_states" not in best
    result = cloudxfer(
        "test", *args, f"--ckpt_path={last}", f"--trainer.default_root_dir={tmp_path / 'test'}",
        warnings=True,
    )  # fmt: skip
    assert "test/oa" in result.stdout
    assert "callbacks used to create the checkpoint" not in result.stdout + result.stderr


@pytest.mark.slow
def test_wrong_stage_checkpoint_is_refused_naming_the_file(chain_run: Path, tmp_path: Path) -> None:
    runs = chain_run / "runs"
    wrong = runs / "aux_sar" / "checkpoints" / "best.ckpt"
    args = _stage_args(chain_run, "target")
    result = cloudxfer(
        "test", *args, f"--ckpt_path={wrong}", f"--trainer.default_root_dir={tmp_path}", check=False
    )
    assert result.returncode != 0
    assert str(wrong) in result.stderr and "stage 'auxiliary'" in result.stderr
    # A SAR auxiliary given where the optical teacher belongs: modality mismatch.
    result = cloudxfer(
        "fit",
        *args,
        f"--model.init_args.teacher_opt={wrong}",
        "--trainer.fast_dev_run=true",
        f"--trainer.default_root_dir={tmp_path}",
        check=False,
    )
    assert result.returncode != 0
    assert str(wrong) in result.stderr and "modality is 'sar', expected 'opt'" in result.stderr


@pytest.mark.slow
def test_checkpoint_with_other_classes_or_corrupt_is_refused(
    chain_run: Path, tmp_path: Path
) -> None:
    ckpt = chain_run / "runs" / "aux_opt" / "checkpoints" / "best.ckpt"
    with pytest.raises(CheckpointError, match="this run has 9"):
        load_frozen_model(ckpt, {"auxiliary"}, class_names=CLASSES[:9])
    model, meta = load_frozen_model(ckpt, {"auxiliary"}, class_names=CLASSES, modality="opt")
    assert meta["stage"] == "auxiliary" and not any(p.requires_grad for p in model.parameters())
    batch = {"image_opt": torch.zeros(2, 3, 64, 64)}
    assert model(batch).shape == (2, len(CLASSES))
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        read_metadata(broken)


@pytest.mark.slow
def test_print_config_and_plot_command(chain_run: Path, tmp_path: Path) -> None:
    result = cloudxfer("fit", *_stage_args(chain_run, "target"), "--print_config")
    assert "TargetDistillation" in result.stdout and "irm: batch" in result.stdout
    out = tmp_path / "fig8.png"
    runs = chain_run / "runs"
    cloudxfer("plot", "losses", str(runs / "target"), str(runs / "target_noirm"), "--out", str(out))
    assert out.stat().st_size > 10_000


@pytest.mark.slow
def test_wandb_offline_run_holds_group_job_type_config_and_per_modality_series(
    chain_run: Path, tmp_path: Path
) -> None:
    teachers = {"opt": "aux_opt", "sar": "aux_sar", "source": "source_finetune"}
    best = {
        name: chain_run / "runs" / stage / "checkpoints" / "best.ckpt"
        for name, stage in teachers.items()
    }
    cloudxfer(
        "fit",
        *_stage_args(chain_run, "target"),
        *(f"--model.init_args.teacher_{name}={path}" for name, path in best.items()),
        "--wandb.enabled=true",
        "--wandb.name=target-seed0",
        "--wandb.group=grouptable1",
        "--wandb.job_type=target",
        "--wandb.tags=[seed0,target]",
        "--trainer.limit_train_batches=3",  # one smoke epoch of 3 steps, then validation
        "--trainer.limit_val_batches=1",
        f"--trainer.default_root_dir={tmp_path}",
    )
    (run_dir,) = offline_runs(tmp_path)  # W&B writes under the run folder, offline
    log = records(run_dir)
    run = run_record(log)
    assert run["run_group"] == "grouptable1" and run["job_type"] == "target"
    assert run["display_name"] == "target-seed0" and run["tags"] == ["seed0", "target"]
    # the resolved config travels with the run, so runs compare by their settings
    config = run["config"]["update"]
    assert config["model"]["class_path"] == "cloudxfer.stages.TargetDistillation"
    assert config["model"]["init_args"]["irm"] == "batch"
    assert config["wandb"]["group"] == "grouptable1"
    # the per-modality series, one value per training step, and the held-out loss
    for key in ("loss/opt", "loss/sar", "irm/rho_opt", "irm/rho_sar", "irm/s_opt", "irm/s_sar"):
        values = history(log, key)
        assert len(values) == 3 and all(math.isfinite(v) for v in values), key
    assert history(log, "val/loss")  # what sweeps/target.yaml minimises
    assert (tmp_path / "metrics.csv").is_file()  # the CSV logger stays on beside W&B


@pytest.mark.slow
def test_run_logs_its_table_to_wandb_beside_each_runs_group_and_job_type(
    chain_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tablewb"
    data = chain_run / "data"
    cloudxfer(
        "run", "--methods", "sl", "--profile", "smoke", "--out", str(out),
        "--data-root", str(data / "target"), "--source-root", str(data / "source"),
        "--wandb.enabled=true", "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
        "--profile.init=scratch",  # SL alone: no source pre-training run to log
    )  # fmt: skip
    # each run: named by method and seed, grouped by the output folder, job type its method
    (sl_dir,) = offline_runs(out / "seed0" / "sl")
    sl = run_record(records(sl_dir))
    assert (sl["display_name"], sl["run_group"], sl["job_type"]) == ("sl-seed0", "tablewb", "sl")
    assert sl["tags"] == ["seed0", "sl"]
    assert sl["config"]["update"]["model"]["init_args"]["method"] == "sl"
    # the table: one more run of the group, its rows a W&B table, its provenance the config
    (table_dir,) = offline_runs(out)
    log = records(table_dir)
    table_run = run_record(log)
    assert (table_run["run_group"], table_run["job_type"]) == ("tablewb", "table")
    assert table_run["config"]["update"]["Seeds"] == "0"
    assert table_run["config"]["update"]["Command"].startswith("cloudxfer run --methods sl")
    (media,) = (table_dir / "files" / "media" / "table").glob("*.table.json")
    logged = json.loads(media.read_text())
    with (out / "table.csv").open(newline="") as handle:
        (line,) = list(csv.DictReader(handle))
    (row,) = logged["data"]
    cells = dict(zip(logged["columns"], row, strict=True))
    assert cells["method"] == "sl" and cells["label"] == line["label"]
    assert cells["OA"] == pytest.approx(float(line["OA"])) and cells["n_seeds"] == 1
    assert "Command" not in cells  # provenance is the run's config, not a column


def test_synth_command_writes_both_layouts(tmp_path: Path) -> None:
    cloudxfer("synth", "source", "--out", str(tmp_path / "src"), "--per-class", "2", "--seed", "3")
    folders = [p for p in (tmp_path / "src").iterdir() if p.is_dir()]
    assert len(folders) > len(CLASSES)  # a larger, only partly overlapping source class set
    assert all(len(list(folder.glob("*.png"))) == 2 for folder in folders)
    cloudxfer("synth", "target", "--out", str(tmp_path / "tgt"), "--pairs", "20", "--seed", "3")
    assert (tmp_path / "tgt" / "labels.csv").is_file()
    assert list((tmp_path / "tgt").glob("ROIs*/s1_*/*_s1_*_p*.tif"))


@pytest.mark.slow
def test_test_under_two_process_ddp_matches_single_process(chain_run: Path, tmp_path: Path) -> None:
    ckpt = chain_run / "runs" / "target" / "checkpoints" / "best.ckpt"
    args = _stage_args(chain_run, "target")
    cloudxfer(
        "test",
        *args,
        f"--ckpt_path={ckpt}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        f"--trainer.default_root_dir={tmp_path}",
    )
    ddp_rows = list(csv.DictReader((tmp_path / "test" / "predictions.csv").open()))
    single = chain_run / "runs" / "target" / "test"
    single_rows = list(csv.DictReader((single / "predictions.csv").open()))
    assert [(r["id"], r["pred"]) for r in ddp_rows] == [(r["id"], r["pred"]) for r in single_rows]
    ddp_metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    single_metrics = json.loads((single / "metrics.json").read_text())
    if single_metrics["n"] % 2 == 0:  # no sampler padding: identical global metrics
        for key in ("oa", "aa", "kappa", "n", "n_cloudy", "n_clear"):
            assert ddp_metrics[key] == pytest.approx(single_metrics[key], abs=1e-6)


@pytest.mark.slow
def test_every_stage_records_its_training_and_convergence(chain_run: Path) -> None:
    runs = chain_run / "runs"
    stdout = (chain_run / "chain_stdout.txt").read_text()
    assert "Convergence (schedule finished (the handed-on epoch at <= 20% of the peak" in stdout
    started = {
        "source_pretrain": "scratch",
        "source_finetune": str(runs / "source_pretrain" / "checkpoints" / "best.ckpt"),
        # the protocol's init: source; the smoke students are f_S's architecture
        "aux_opt": str(runs / "source_pretrain" / "checkpoints" / "best.ckpt"),
        "target": str(runs / "source_pretrain" / "checkpoints" / "best.ckpt"),
    }
    for stage in ("source_pretrain", "source_finetune", "aux_opt", "aux_sar", "target"):
        record = json.loads((runs / stage / "training.json").read_text())
        (epoch,) = record["epochs"]  # smoke: one epoch
        assert epoch["epoch"] == 0 and epoch["train"]["loss"] == record["final_train_loss"]
        assert math.isfinite(epoch["val"]["loss"])  # the stage's own loss on held-out tiles
        assert record["convergence"]["met"] is False  # one epoch cannot show a flat tail
        assert record["convergence"]["best_epoch"] == 0
        # the schedule ends with the budget: the handed-on last epoch ran at its annealed end
        protocol = record["protocol"]
        handed = protocol["handed_on"]
        assert protocol["selection"] == "last" and protocol["budget_epochs"] == 1
        assert handed["epoch"] == 0 and handed["schedule_progress"] == 1.0
        assert handed["lr_share"] <= 0.2 and epoch["peak_lr"] > epoch["lr"]
        assert protocol["initialisation"] == started.get(stage, protocol["initialisation"])
        best = torch.load(runs / stage / "checkpoints" / "best.ckpt", weights_only=False)
        # the last epoch's weights, written as the fit ended (Lightning counts the epochs done)
        assert best["epoch"] == 1 and "optimizer_states" not in best
        assert f"{stage}: final train loss {record['final_train_loss']:.4f}" in stdout
        if stage != "source_pretrain":
            metrics = json.loads((runs / stage / "test" / "metrics.json").read_text())
            assert metrics["training"] == record  # carried by the checkpoint into the test run
    target = json.loads((runs / "target" / "training.json").read_text())
    train = target["epochs"][0]["train"]
    # with batch sums rho_opt * rho_sar == 1 at every step (the epoch means need not multiply
    # to 1): the per-step values logged to metrics.csv
    steps = [
        row
        for row in csv.DictReader((runs / "target" / "metrics.csv").open())
        if row.get("irm/rho_opt")
    ]
    assert steps and all(
        float(r["irm/rho_opt"]) * float(r["irm/rho_sar"]) == pytest.approx(1.0, rel=1e-4)
        for r in steps
    )
    assert {"irm/s_opt", "irm/s_sar", "loss/opt", "loss/sar", "loss/source"} <= set(train)
    diagnostics = target["diagnostics"]
    assert set(diagnostics["teacher_oa"]) == {"opt", "sar", "source"}
    assert set(diagnostics["teacher_agreement"]) == {"opt~sar", "opt~source", "sar~source"}
    split = list(csv.DictReader((runs / "target" / "split.csv").open()))
    n_unlabelled = sum(r["split"] == "unlabelled" for r in split)
    assert 0 < diagnostics["tiles"]["all"] < n_unlabelled  # training tiles, less the held-out
    oa = diagnostics["teacher_oa"]["source"]
    n = diagnostics["tiles"]
    assert oa["all"] * n["all"] == pytest.approx(
        oa["cloudy"] * n["cloudy"] + oa["clear"] * n["clear"], abs=1e-4
    )
    aux = json.loads((runs / "aux_opt" / "training.json").read_text())["diagnostics"]
    assert 0.0 <= aux["kept_share"] <= 1.0 and set(aux["teacher_oa"]) == {"source"}


@pytest.mark.slow
def test_report_prints_metrics_and_diagnostics(
    chain_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cloudxfer.cli import main

    assert main(["report", str(chain_run / "runs")]) == 0
    out = capsys.readouterr().out
    for stage in ("source_pretrain", "aux_opt", "aux_sar", "target", "target_noirm"):
        assert f"== {chain_run / 'runs' / stage}\n" in out
    assert "teacher opt: accuracy on the training tiles" in out
    assert "teacher agreement opt~sar" in out and "pseudo-labels kept by the filter" in out
    assert "rho_opt" in out and "converged: NO" in out
    # the protocol of every stage, and what the filter dropped
    assert "protocol: init scratch; schedule cosine over 1 epochs" in out  # f_pre
    assert f"protocol: init {chain_run / 'runs' / 'source_pretrain'}" in out  # the students
    assert "selection last: epoch 1 handed on at lr" in out and "schedule progress 1.00" in out
    assert re.search(r"teacher accuracy on the kept tiles [\d.n/a]+ % \(\d+ tiles\)", out)
    # on the test tiles: the student's agreement with its teacher, by teacher confidence
    aux = out[out.index(f"== {chain_run / 'runs' / 'aux_opt'}\n") :]
    line = next(x for x in aux.splitlines() if x.startswith("test agreement with teacher "))
    student = list(
        csv.DictReader((chain_run / "runs" / "aux_opt" / "test" / "predictions.csv").open())
    )
    teacher = {
        r["id"]: r
        for r in csv.DictReader(
            (chain_run / "runs" / "source_finetune" / "test" / "predictions.csv").open()
        )
    }
    same = sum(r["pred"] == teacher[r["id"]]["pred"] for r in student)
    assert f"all {100 * same / len(student):.1f} % ({len(student)})" in line
    metrics = json.loads((chain_run / "runs" / "target" / "test" / "metrics.json").read_text())
    assert f"OA {100 * metrics['oa']:.1f} %" in out
    with pytest.raises(SystemExit):
        main(["report", str(chain_run / "missing")])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("row", "setting"),
    [
        ("target_irm_sample", {"irm": "sample"}),
        ("target_late", {"fusion": "late"}),
        ("target_soft", {"targets": "soft"}),
        ("target_irm_source", {"irm_reference": "source"}),
    ],
)
def test_f2_ablation_rows_fit_and_test_through_the_cli(
    chain_run: Path, tmp_path: Path, row: str, setting: dict[str, str]
) -> None:
    # the runner's command for the row: F2's config, then the row's own YAML changing one setting
    args = _stage_args(chain_run, row)
    cloudxfer("fit", *args, f"--trainer.default_root_dir={tmp_path}")
    ckpt = tmp_path / "checkpoints" / "best.ckpt"
    hparams = torch.load(ckpt, weights_only=False)["hyper_parameters"]
    assert {key: hparams[key] for key in setting} == setting
    assert read_metadata(ckpt)["stage"] == "target"
    cloudxfer("test", *args, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}")
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert 0.0 <= metrics["oa"] <= 1.0 and metrics["n"] > 0
    (epoch,) = json.loads((tmp_path / "training.json").read_text())["epochs"]
    train = epoch["train"]
    # eq. 5's ratios lie in [1/M, M] (M = 10 classes); the Fig. 4 arrow variant is held there
    assert math.isfinite(train["loss"]) and 0.1 <= train["irm/rho_opt"] <= 10.0
    assert ("irm/clipped_share" in train) == (row == "target_irm_source")
    if row == "target_late":  # one encoder per modality
        assert read_metadata(ckpt)["model"]["kind"] == "late_fusion"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("row", "role", "refusal"),
    [
        ("kd_s", "teacher_opt", "from method 'kd_s'"),
        ("finetune_opt", "teacher_source", "from method 'finetune_opt'"),
        ("finetune_sar", "teacher_source", "from method 'finetune_sar'"),
        ("sl", "teacher_sar", "from stage 'supervised'"),
        ("kdhn", "teacher_sar", "from method 'kdhn'"),
        ("tlf", "teacher_opt", "from stage 'fusion'"),
        ("ogm_ge", "teacher_sar", "from stage 'fusion'"),
        ("dsan", "teacher_sar", "from stage 'dsan'"),
        ("ttl", "teacher_sar", "from stage 'ttl'"),
        ("spl", "teacher_opt", "from stage 'spl'"),
        ("cycit", "teacher_sar", "from stage 'cycit'"),
    ],
)
def test_comparison_rows_fit_test_and_never_serve_as_teachers(
    chain_run: Path, tmp_path: Path, row: str, role: str, refusal: str,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    args = _stage_args(chain_run, row)
    if row == "spl":  # its restorer (not part of the chain) and the clear twins the runner adds
        restorer = request.getfixturevalue("spl_restorer")
        args += [f"--model.init_args.restorer_from={restorer}", "--data.init_args.clear_twins=true"]
    if row == "cycit":  # its pre-trained CycleGAN and the clear twins the runner adds
        translator = request.getfixturevalue("cycit_translator")
        args += [f"--model.init_args.translator_from={translator}"]
        args += ["--data.init_args.clear_twins=true"]
    cloudxfer("fit", *args, f"--trainer.default_root_dir={tmp_path}")
    ckpt = tmp_path / "checkpoints" / "best.ckpt"
    meta = read_metadata(ckpt)
    assert meta["method"] == row
    cloudxfer("test", *args, f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path}")
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert 0.0 <= metrics["oa"] <= 1.0
    if row == "dsan":  # scored on SAR; trained with both streams, LMMD switched on by its ramp
        assert meta["modality"] == "sar" and metrics["modality"] == "sar"
        (epoch,) = json.loads((tmp_path / "training.json").read_text())["epochs"]
        assert epoch["train"]["loss/lmmd"] > 0.0 and 0.0 < epoch["train"]["lmmd/weight"] < 1.0
        assert math.isfinite(epoch["val"]["loss"])
    if row == "ttl":  # scored on SAR; its first epoch trains on the optical end of the bridge
        assert meta["modality"] == "sar" and metrics["modality"] == "sar"
        (epoch,) = json.loads((tmp_path / "training.json").read_text())["epochs"]
        assert epoch["train"]["ttl/sar_share"] == 0.0
    if row == "spl":  # optical; the easiest half of the pairs first; restoration scored
        assert meta["modality"] == "opt" and meta["model"]["kind"] == "restore_then_classify"
        (epoch,) = json.loads((tmp_path / "training.json").read_text())["epochs"]
        assert epoch["train"]["spl/admitted_share"] == 0.5 and epoch["train"]["spl/pairs"] > 0
        assert metrics["n_restored"] == metrics["n_cloudy"] > 0
        assert metrics["psnr"] > 0 and 0 < metrics["ssim"] <= 1 and metrics["psnr_input"] > 0
        assert (tmp_path / "test" / "restoration_examples.png").stat().st_size > 10_000
    if row == "cycit":  # SAR translated, f_S classifies; both CycleGAN steps; translation scored
        assert meta["modality"] == "sar" and meta["model"]["kind"] == "translate_then_classify"
        (epoch,) = json.loads((tmp_path / "training.json").read_text())["epochs"]
        train = epoch["train"]
        assert train["gan/paired_share"] == 1.0 and train["loss/paired"] > 0  # every twin served
        assert train["loss/discriminator"] > 0 and math.isfinite(epoch["val"]["loss"])
        assert metrics["n_translated"] == metrics["n"] > 0  # every test tile has its twin
        assert metrics["psnr"] > 0 and 0 < metrics["ssim"] <= 1 and "psnr_input" not in metrics
        assert (tmp_path / "test" / "translation_examples.png").stat().st_size > 10_000
        pre = torch.load(request.getfixturevalue("cycit_translator"), weights_only=False)
        mine = torch.load(ckpt, weights_only=False)["state_dict"]
        moved = [
            k
            for k, v in pre["state_dict"].items()
            if not torch.equal(v, mine[k.replace("model.", "model.translator.", 1)])
        ]
        assert any(".sar_to_opt." in k for k in moved) and any(".d_opt." in k for k in moved)
    if row.startswith("finetune"):  # the encoder stayed f_pre's: only the head was trained
        pre = torch.load(chain_run / "runs" / "source_pretrain" / "checkpoints" / "best.ckpt",
                         weights_only=False)["state_dict"]  # fmt: skip
        mine = torch.load(ckpt, weights_only=False)["state_dict"]
        # weights only: batch-norm running statistics follow the target tiles (docs/baselines.md)
        weights = [k for k in mine if "encoder" in k and "running" not in k and "batches" not in k]
        assert weights and all(torch.equal(mine[k], pre[k]) for k in weights)
    # Given where the chain expects f_S or an F1 auxiliary, its checkpoint is refused by name.
    result = cloudxfer(
        "fit",
        *_stage_args(chain_run, "target"),
        f"--model.init_args.{role}={ckpt}",
        "--trainer.fast_dev_run=true",
        f"--trainer.default_root_dir={tmp_path / 'f2'}",
        check=False,
    )
    assert result.returncode != 0
    assert str(ckpt) in result.stderr and refusal in result.stderr


@pytest.mark.slow
def test_early_stopping_ends_a_fit_and_its_result_is_the_lowest_epoch(
    chain_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cloudxfer.cli import main

    monkeypatch.setattr(sys, "argv", ["cloudxfer"])  # in-process: the CLI reads only our args
    max_epochs = 6
    args = [
        *_stage_args(chain_run, "aux_sar"),
        "--profile.patience=1",
        "--profile.selection=lowest_val",
        f"--trainer.max_epochs={max_epochs}",
        "--trainer.limit_train_batches=2",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    # early stopping would cut a cosine short: refused before anything is written
    assert main(["fit", *args]) == 2
    assert "early stopping would end the 'cosine' schedule" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()
    assert main(["fit", *args, "--model.init_args.scheduler=plateau"]) == 0
    record = json.loads((tmp_path / "training.json").read_text())
    conv = record["convergence"]
    curve = [epoch["val"]["loss"] for epoch in record["epochs"]]
    best = min(range(len(curve)), key=curve.__getitem__)
    assert conv["best_epoch"] == best and record["protocol"]["handed_on"]["epoch"] == best
    assert record["protocol"]["schedule"] == "plateau"
    if len(curve) < max_epochs:  # stopped early: only once the lowest loss was an epoch old
        assert len(curve) - 1 - best >= 1
    # two batches an epoch: best.ckpt holds the weights after the lowest epoch, last.ckpt
    # (where a resume starts) those after the final one
    saved = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    assert saved["global_step"] == 2 * (best + 1)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 * len(curve)


@pytest.mark.slow
def test_a_fit_without_held_out_tiles_leaves_its_last_epoch_as_result(
    chain_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudxfer.cli import main

    monkeypatch.setattr(sys, "argv", ["cloudxfer"])  # in-process: the CLI reads only our args
    args = [
        *_stage_args(chain_run, "aux_sar"),
        "--data.init_args.val_fraction=0",
        "--trainer.limit_train_batches=2",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    assert main(["fit", *args]) == 0
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert best["global_step"] == last["global_step"] == 2
    assert all(torch.equal(best["state_dict"][k], v) for k, v in last["state_dict"].items())
    record = json.loads((tmp_path / "training.json").read_text())
    assert record["convergence"]["best_epoch"] is None and not record["convergence"]["met"]


class KillAtEpoch(pl.Callback):
    """Kill the process (SIGKILL: no cleanup, no final checkpoint) when ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_a_fit_killed_mid_stage_resumes_from_its_last_epoch(
    chain_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudxfer.cli import main

    killer = {"class_path": f"{__name__}.KillAtEpoch", "init_args": {"epoch": 2}}
    args = [
        *_stage_args(chain_run, "aux_sar"),
        "--trainer.max_epochs=3",
        "--trainer.limit_train_batches=2",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    killed = cloudxfer("fit", *args, f"--trainer.callbacks+={json.dumps(killer)}", check=False)
    assert killed.returncode == -signal.SIGKILL
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 4  # two finished epochs
    cloudxfer("fit", *args, f"--ckpt_path={last}")
    record = json.loads((tmp_path / "training.json").read_text())
    assert [epoch["epoch"] for epoch in record["epochs"]] == [0, 1, 2]  # continued, not restarted
    assert torch.load(last, weights_only=False)["global_step"] == 6
    # the same fit uninterrupted: the same epochs, figures and weights (shuffling by seed and
    # epoch, random states carried by the checkpoint)
    whole = tmp_path / "whole"
    cloudxfer("fit", *args, f"--trainer.default_root_dir={whole}")
    assert json.loads((whole / "training.json").read_text()) == record
    # metrics.csv keeps the interrupted epochs' rows: it reads as the uninterrupted fit's
    assert (tmp_path / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    resumed = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    straight = torch.load(whole / "checkpoints" / "best.ckpt", weights_only=False)
    assert resumed["global_step"] == straight["global_step"]
    assert all(torch.equal(v, straight["state_dict"][k]) for k, v in resumed["state_dict"].items())
    # Same seed, data and config, same test outputs byte for byte: the resumed fit, the
    # uninterrupted one and a second uninterrupted fit, this time in the test's own process
    # (what an earlier run left in a process does not reach the results). metrics.json holds
    # no wall time, path or date, so the whole file compares.
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])  # in-process: the CLI reads only our args
    again = tmp_path / "again"
    assert main(["fit", *args, f"--trainer.default_root_dir={again}"]) == 0
    for folder in (tmp_path, whole, again):
        best = folder / "checkpoints" / "best.ckpt"
        test_args = [f"--trainer.default_root_dir={folder}", f"--ckpt_path={best}"]
        assert main(["test", *args, *test_args]) == 0
    for name in ("metrics.json", "predictions.csv"):
        outputs = [(folder / "test" / name).read_bytes() for folder in (tmp_path, whole, again)]
        assert outputs[0] and outputs[1] == outputs[0] and outputs[2] == outputs[0], name


@pytest.mark.slow
def test_a_fit_over_an_earlier_fit_is_refused_unless_resuming_or_overwriting(
    chain_run: Path, tmp_path: Path
) -> None:
    args = [
        *_stage_args(chain_run, "aux_sar"),
        "--trainer.limit_train_batches=1",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    cloudxfer("fit", *args)
    stale = tmp_path / "checkpoints" / "stale.ckpt"
    stale.write_bytes(b"an older fit's file")
    refused = cloudxfer("fit", *args, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--ckpt_path" in refused.stderr and "--overwrite" in refused.stderr
    assert stale.is_file()  # nothing touched
    cloudxfer("fit", *args, "--overwrite=true")
    assert not stale.exists() and (tmp_path / "checkpoints" / "best.ckpt").is_file()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_refused_refit_leaves_the_previous_run_folder_as_it_was(
    chain_run: Path, tmp_path: Path
) -> None:
    args = [
        *_stage_args(chain_run, "aux_sar"),
        "--trainer.limit_train_batches=1",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    cloudxfer("fit", *args)
    before = _snapshot(tmp_path)
    assert {"config.yaml", "metrics.csv", "split.csv", "checkpoints/best.ckpt"} <= set(before)
    # The optical auxiliary given as the SAR auxiliary's teacher, with --overwrite: refused
    # before the old checkpoints are deleted or any run file is rewritten.
    wrong = chain_run / "runs" / "aux_opt" / "checkpoints" / "best.ckpt"
    refused = cloudxfer(
        "fit", *args, f"--model.init_args.teacher={wrong}", "--overwrite=true", check=False
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert str(wrong) in refused.stderr
    assert _snapshot(tmp_path) == before


@pytest.mark.slow
def test_an_unwritable_run_folder_is_one_error_naming_it(chain_run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("a regular file where a folder should be")
    folder = blocker / "run"  # unwritable even for root: its parent is not a directory
    result = cloudxfer(
        "fit", *_stage_args(chain_run, "aux_sar"), f"--trainer.default_root_dir={folder}",
        check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{folder}: cannot write the run folder" in result.stderr
    assert blocker.read_text() == "a regular file where a folder should be"


@pytest.mark.slow
def test_the_documented_example_method_registers_and_runs(
    chain_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/architecture.md's example: one YAML, registered from a folder, run on smoke
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text.split("<!-- example-method: kd_s_t2 -->")[1].split("<!-- /example-method -->")[0]
    folder = tmp_path / "methods"
    folder.mkdir()
    (folder / "kd_s_t2.yaml").write_text(block.split("```yaml\n")[1].split("```")[0])
    monkeypatch.setattr(methods_module, "METHODS", register(folder, dict(METHODS)))
    setting = Setting(
        profile=profile_path("smoke"),
        dataset="sen12ms_cloud",
        overrides=(
            f"--profile.data_root={(chain_run / 'data' / 'target').resolve()}",
            f"--profile.source_root={(chain_run / 'data' / 'source').resolve()}",
        ),
        run_root=lambda seed: chain_run / "runs",
    )
    runs = plan(["kd_s_t2"], [0], setting)
    assert [r.method.name for r in runs] == ["source_pretrain", "source_finetune", "kd_s_t2"]
    lines: list[str] = []
    results = execute(runs, log=lines.append)
    # its upstream runs are the chain's own, reused; the new method trains and is scored
    assert sum("(reused;" in line for line in lines) == 2
    metrics = results[("kd_s_t2", 0)]
    assert metrics is not None and metrics["n"] > 0
    hparams = torch.load(runs[-1].checkpoint, weights_only=False)["hyper_parameters"]
    assert hparams["temperature"] == 2.0 and hparams["targets"] == "soft"  # kd_s's, then its own


@pytest.mark.slow
def test_a_run_forked_by_the_runner_ends_as_a_fresh_subprocess_does(
    chain_run: Path, tmp_path: Path
) -> None:
    """The runner's forkserver children leak no random, thread or module state into a run."""
    from cloudxfer.runner.launch import launch

    scores = []
    for how in ("forked", "subprocess", "forked again"):
        folder = tmp_path / how.replace(" ", "_")
        common = [
            *_stage_args(chain_run, "source_finetune"),
            f"--trainer.default_root_dir={folder}",
        ]
        test = [*common, f"--ckpt_path={folder / 'checkpoints' / 'best.ckpt'}"]
        for subcommand, args in (("fit", common), ("test", test)):
            line = [sys.executable, "-m", "cloudxfer", subcommand, *args]
            if how == "subprocess":
                assert subprocess.run(line, check=False).returncode == 0
            else:
                assert launch(line) == 0
        scores.append(json.loads((folder / "test" / "metrics.json").read_text()))
    assert scores[0] == scores[1] == scores[2]
    # a failing command's exit code reaches the runner
    assert launch([sys.executable, "-m", "cloudxfer", "fit", "--config", "missing.yaml"]) != 0


def _table_files(out: Path, share: Path) -> dict[str, str]:
    """A table's files with its output and share folders named alike (they enter its header)."""
    return {
        name: (out / name).read_text().replace(str(out), "OUT").replace(str(share), "SHARE")
        for name in ("table.md", "table.csv")
    }


@pytest.mark.slow
def test_a_killed_runner_run_again_writes_the_uninterrupted_table(
    chain_run: Path, tmp_path: Path
) -> None:
    """Killed during a fit, between a fit and its test, while writing its table or copying a
    shared run, ``cloudxfer run`` run again writes the uninterrupted table, and fits no run
    that had finished. Eight runner invocations of a two-run smoke table."""
    data = chain_run / "data"

    def run(out: Path, share: Path, kill: str | None = None) -> tuple[int, int]:
        """Return the runner's exit code and how many fits ran to their end (traced)."""
        trace = out.parent / f"{out.name}.trace"
        trace.unlink(missing_ok=True)
        env = {**os.environ, "CLOUDXFER_TEST_KILL_TRACE": str(trace), "PYTHONWARNINGS": "ignore"}
        env.pop("CLOUDXFER_TEST_KILL_AT", None)
        if kill:
            env["CLOUDXFER_TEST_KILL_AT"] = kill
        args = [
            "run", "--methods", "source_finetune", "--seeds", "0", "--profile", "smoke",
            "--out", str(out), "--share-dir", str(share), "--data-root", str(data / "target"),
            "--source-root", str(data / "source"),
        ]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "cloudxfer", *args], env=env, cwd=REPO, capture_output=True
        )
        points = trace.read_text().splitlines() if trace.is_file() else []
        return done.returncode, sum(point.startswith("fit_end:") for point in points)

    def unfinished(out: Path) -> int:
        folders = (out / "seed0" / name for name in ("source_pretrain", "source_finetune"))
        return sum(not (folder / "stage_done.json").is_file() for folder in folders)

    assert run(tmp_path / "ref", tmp_path / "share_ref") == (0, 2)
    reference = _table_files(tmp_path / "ref", tmp_path / "share_ref")
    out, share = tmp_path / "killed", tmp_path / "share"
    for kill in ("train_batch:2", "runner:fitted", "write:table.csv"):
        rc, _ = run(out, share, kill)
        assert rc != 0, kill  # the fit, or the runner itself, was killed
    before = unfinished(out)
    assert run(out, share) == (0, before)  # only what had not finished was fitted
    assert _table_files(out, share) == reference
    # a second table reads the shared source pre-training: killed while copying it
    copied = tmp_path / "copied"
    rc, _ = run(copied, share, "runner:copy:2")
    assert rc != 0
    assert run(copied, share) == (0, 1)  # f_S alone: the pre-training is copied, not fitted
    assert _table_files(copied, share) == reference
