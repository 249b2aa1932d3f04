"""The pool size reaches the data module of the distilled stages, and only theirs (no training).

``make fig-pool`` passes it as ``--stage.<method>.data.init_args.unlabelled_pool=N``: the runner
hands it to that method's fit and test commands, and ``cloudxfer fit`` to the data module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from cloudxfer.cli import main
from cloudxfer.runner.cli import main as run_main
from cloudxfer.runner.methods import EXPERIMENTS, METHODS

POOL = "data.init_args.unlabelled_pool"


def _commands(text: str) -> dict[str, list[str]]:
    """The printed commands under each ``# <method> seed <k>`` header, by method."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# "):
            current = line.split()[1]
        elif line.strip():
            found.setdefault(current, []).append(line)
    return found


def test_runner_gives_the_pool_to_the_distilled_stages_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pooled = ("aux_opt", "aux_sar", "target")
    args = ["--methods", "source_finetune", *pooled, "--out", str(tmp_path), "--print-commands"]
    assert run_main([*args, *(f"--stage.{m}.{POOL}=1000" for m in pooled)]) == 0
    commands = _commands(capsys.readouterr().out)
    assert set(commands) == {"source_pretrain", "source_finetune", *pooled}
    for name, lines in commands.items():
        assert len(lines) == (1 if name == "source_pretrain" else 2)  # fit (and test)
        for line in lines:
            assert (f"--{POOL}=1000" in line) == (name in pooled), (name, line)


def test_fit_passes_the_pool_to_the_data_module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])
    m = METHODS["aux_opt"]
    args = [
        "fit",
        *("--config", str(EXPERIMENTS / "profiles" / "quick.yaml")),
        *(arg for path in m.configs for arg in ("--config", str(path))),
        f"--data={EXPERIMENTS / 'data' / 'sen12ms_cloud.yaml'}",
    ]
    printed = []
    for extra in ([], [f"--{POOL}=3000"]):
        with pytest.raises(SystemExit) as exited:
            main([*args, *extra, "--print_config"])
        assert exited.value.code == 0
        printed.append(yaml.safe_load(capsys.readouterr().out)["fit"]["data"]["init_args"])
    assert printed[0].get("unlabelled_pool") is None  # not given: every unlabelled tile
    assert printed[1]["unlabelled_pool"] == 3000
    assert printed[1]["train_subset"] == "unlabelled"
