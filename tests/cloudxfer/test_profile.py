"""Configs compose by axes: profile, data set and method, each value written once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudxfer.cli import main
from cloudxfer.profile import INIT_KEY, Profile, pretraining_of, profile_targets
from cloudxfer.runner.methods import EXPERIMENTS, METHODS

PROFILES = sorted((EXPERIMENTS / "profiles").glob("*.yaml"))
DATASET = EXPERIMENTS / "data" / "sen12ms_cloud.yaml"


def _resolved(
    capsys: pytest.CaptureFixture[str], profile: Path, method: str, *extra: str
) -> dict[str, Any]:
    """The configuration ``cloudxfer fit --print_config`` prints for a registered method."""
    m = METHODS[method]
    args = [
        "fit",
        *("--config", str(profile)),
        *(arg for path in m.configs for arg in ("--config", str(path))),
        *([f"--data={DATASET}"] if m.reads == "target" else []),
        *extra,
        "--print_config",
    ]
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 0
    return dict(yaml.safe_load(capsys.readouterr().out)["fit"])


def test_no_method_config_interpolates_the_profile() -> None:
    for path in (EXPERIMENTS / "methods").glob("*.yaml"):
        code = [line for line in path.read_text().splitlines() if not line.startswith("#")]
        assert not [line for line in code if "${" in line or "profile." in line], path


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_takes_its_budget_network_and_data_from_the_profile(
    method: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])
    m = METHODS[method]
    quick = yaml.safe_load((EXPERIMENTS / "profiles" / "quick.yaml").read_text())["profile"]
    config = _resolved(capsys, EXPERIMENTS / "profiles" / "quick.yaml", method)
    own = m.merged_config()
    for key, field in profile_targets(m.card).items():
        node: Any = own
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None or key.removeprefix("data.init_args.") in m.card.data_args:
            continue  # the method sets it itself (CycIT's lr and batches of 8)
        value: Any = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if key.startswith("data.") and value is None and key.split(".")[-1] not in str(config):
            continue  # an argument the data module does not have
        expected = quick.get(field, getattr(Profile(), field))
        pretraining = pretraining_of(m.card, {**vars(Profile()), **quick})
        if key == INIT_KEY and pretraining:  # init: source names the pre-training's result
            expected = f"{quick['run_root']}/{pretraining}/checkpoints/best.ckpt"
        assert value == expected, (method, key)
    # the card's data settings and upstream results, and the run folder under run_root
    for key, upstream in m.card.needs.items():
        folder = config["model"]["init_args"][key.split(".")[-1]]
        assert folder == f"{quick['run_root']}/{upstream}/checkpoints/best.ckpt"
    for key, value in m.card.data_args.items():
        assert config["data"]["init_args"][key] == value
    assert config["trainer"]["default_root_dir"] == f"{quick['run_root']}/{method}"


def test_a_method_setting_wins_over_the_profile_and_the_command_line_over_both(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])
    smoke = EXPERIMENTS / "profiles" / "smoke.yaml"
    cycit = _resolved(capsys, smoke, "cycit")
    assert cycit["model"]["init_args"]["lr"] == 0.0002  # its own, not the profile's 0.01
    assert cycit["data"]["init_args"]["batch_size"] == 8  # its card's, not the profile's 8
    assert cycit["data"]["init_args"]["clear_twins"] is True  # its declared stream
    given = _resolved(
        capsys, smoke, "aux_opt", "--trainer.max_epochs=3", "--model.init_args.lr=0.5",
        "--profile.target_backbone=resnet18",
    )  # fmt: skip
    assert given["trainer"]["max_epochs"] == 3 and given["model"]["init_args"]["lr"] == 0.5
    assert given["model"]["init_args"]["backbone"] == "resnet18"
    # one profile field changed reaches every method that reads it
    for method in ("aux_opt", "target", "sl"):
        epochs = _resolved(capsys, smoke, method, "--profile.epochs_auxiliary=9")
        assert (epochs["trainer"]["max_epochs"] == 9) == (
            METHODS[method].card.budget == "auxiliary"
        )


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_every_profile_composes_with_the_target_method(
    profile: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])
    values = yaml.safe_load(profile.read_text())["profile"]
    config = _resolved(capsys, profile, "target")
    assert config["model"]["init_args"]["backbone"] == values["target_backbone"]
    assert config["trainer"]["max_epochs"] == values["epochs_target"]
    assert config["seed_everything"] == values["seed"]


@pytest.mark.parametrize(
    ("init", "target_backbone", "expected"),
    [
        ("source", "resnet10", "runs/smoke/source_pretrain/checkpoints/best.ckpt"),
        ("source", "resnet18", "runs/smoke/student_pretrain/checkpoints/best.ckpt"),
        ("scratch", "resnet10", "scratch"),
        ("/weights/imagenet.pth", "resnet10", "/weights/imagenet.pth"),
    ],
)
def test_the_profile_init_starts_every_protocol_student_alike(
    init: str,
    target_backbone: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A student starts from its architecture's source pre-training, scratch or a file."""
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])
    smoke = EXPERIMENTS / "profiles" / "smoke.yaml"
    extra = (f"--profile.init={init}", f"--profile.target_backbone={target_backbone}")
    for method in ("aux_opt", "target", "kd_s", "ogm_ge"):
        config = _resolved(capsys, smoke, method, *extra)
        assert config["model"]["init_args"]["init"] == expected, method
    # f_S starts from f_pre by definition, whatever the protocol; an ablation keeps its own
    source = _resolved(capsys, smoke, "source_finetune", *extra)["model"]["init_args"]
    assert source.get("init") is None
    scratch = _resolved(capsys, smoke, "target_scratch", *extra)
    assert scratch["model"]["init_args"]["init"] == "scratch"
