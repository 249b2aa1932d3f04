"""The example W&B sweep (``sweeps/target.yaml``): held-out loss only, apart from every table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "sweeps" / "target.yaml"


def _sweep() -> dict[str, Any]:
    return dict(yaml.safe_load(SWEEP.read_text()))


def test_the_sweep_minimises_the_held_out_loss_and_never_tests() -> None:
    sweep = _sweep()
    assert sweep["metric"] == {"name": "val/loss", "goal": "minimize"}
    command = [str(word) for word in sweep["command"]]
    assert command[1:3] == ["cloudxfer", "fit"]  # a fit alone: nothing is scored on test
    assert not [word for word in command if "test" in word.split("=")[0] or "ckpt_path" in word]
    # its runs have a folder of their own, never a table's (results/) or a runner's
    (root,) = [w for w in command if w.startswith("--trainer.default_root_dir=")]
    assert root.partition("=")[2].startswith("runs/sweep/")
    # the method's own settings, each one a constructor argument of its model
    names = list(sweep["parameters"])
    assert names and all(name.startswith("model.init_args.") for name in names)


def test_no_table_reads_the_sweep() -> None:
    for path in (REPO / "experiments").rglob("*.yaml"):
        assert "sweeps/" not in path.read_text(), path
    assert "sweeps/" not in (REPO / "Makefile").read_text()


def test_the_sweep_command_parses_with_its_parameters() -> None:
    sweep = _sweep()
    values = {}
    for name, spec in sweep["parameters"].items():
        values[name] = spec["values"][-1] if "values" in spec else spec["min"]
    words = [str(word) for word in sweep["command"][3:] if not str(word).startswith("${")]
    args = [*words, *(f"--{name}={value}" for name, value in values.items()), "--print_config"]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "cloudxfer", "fit", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = yaml.safe_load(result.stdout)
    config = printed.get("fit", printed)  # the subcommand's config, nested or not
    init_args = config["model"]["init_args"]
    assert config["model"]["class_path"] == "cloudxfer.stages.TargetDistillation"
    for name, value in values.items():
        assert init_args[name.removeprefix("model.init_args.")] == value, name
    assert config["wandb"]["enabled"] is True
