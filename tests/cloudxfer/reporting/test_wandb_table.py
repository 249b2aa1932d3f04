"""The table of ``cloudxfer run`` as a W&B table: when it is logged, and what it holds.

W&B itself is replaced by a recorder here; ``test_chain_cli.py`` reads a real offline run.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from cloudxfer.reporting.wandb_table import _column, log_table_if_enabled, wandb_options


def test_wandb_options_reads_every_runs_wandb_overrides_last_one_winning() -> None:
    overrides = [
        "--trainer.max_epochs=2",
        "--wandb.enabled=false",
        "--wandb.project=mine",
        "--stage.sl.wandb.enabled=true",  # one method's: not the table's
        "--wandb.enabled",
        "true",
    ]
    assert wandb_options(overrides) == {"enabled": "true", "project": "mine"}
    assert wandb_options(["--trainer.max_epochs=2"]) == {}


def test_a_column_is_numeric_or_text_as_a_whole() -> None:
    assert _column(["1", "", "3"]) == [1, None, 3]
    assert _column(["0.5", "2"]) == [0.5, 2.0]
    assert _column(["0", "0 1 2"]) == ["0", "0 1 2"]  # seeds stay text
    assert _column(["", ""]) == [None, None]


class _Recorder:
    """Stands in for the ``wandb`` module: records ``init``, ``log`` and ``finish``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls: dict[str, Any] = {}

    def module(self) -> types.ModuleType:
        recorder = self
        module = types.ModuleType("wandb")

        class Table:
            def __init__(self, columns: list[str], data: list[list[Any]]) -> None:
                self.columns, self.data = columns, data

        class Run:
            dir = str(recorder.folder / "files")

            def log(self, values: dict[str, Any]) -> None:
                recorder.calls["log"] = values

            def finish(self) -> None:
                recorder.calls["finished"] = True

        def init(**kwargs: Any) -> Run:
            recorder.calls["init"] = kwargs
            return Run()

        module.Table = Table  # type: ignore[attr-defined]
        module.Settings = lambda **kwargs: kwargs  # type: ignore[attr-defined]
        module.init = init  # type: ignore[attr-defined]
        return module


def test_the_table_is_logged_only_when_wandb_is_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "table.csv"
    table.write_text(
        "group,label,method,OA,OA std,OA n,seeds,Command\n"
        "Opt & SAR,SL,sl,0.25,0.01,2,0 1,cloudxfer run x\n"
        "Opt,Finetune,not run,,,,,cloudxfer run x\n"
    )
    recorder = _Recorder(tmp_path / "wandb" / "offline-run-1")
    monkeypatch.setitem(sys.modules, "wandb", recorder.module())
    provenance = {"Command": "cloudxfer run x"}
    assert log_table_if_enabled(["--trainer.max_epochs=2"], table, provenance, "t1") is None
    assert log_table_if_enabled(["--wandb.enabled=false"], table, provenance, "t1") is None
    assert recorder.calls == {}
    overrides = ["--wandb.enabled=true", "--wandb.project=mine"]
    folder = log_table_if_enabled(overrides, table, provenance, "t1")
    assert folder == tmp_path / "wandb" / "offline-run-1" and recorder.calls["finished"]
    init = recorder.calls["init"]
    assert (init["project"], init["group"], init["job_type"]) == ("mine", "t1", "table")
    assert init["config"] == provenance and init["dir"] == str(tmp_path)
    logged = recorder.calls["log"]["table"]
    assert logged.columns == ["group", "label", "method", "OA", "OA std", "OA n", "seeds"]
    assert logged.data == [
        ["Opt & SAR", "SL", "sl", 0.25, 0.01, 2, "0 1"],
        ["Opt", "Finetune", "not run", None, None, None, None],
    ]


def test_a_wandb_failure_is_one_warning_and_the_table_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "table.csv"
    table.write_text("group,label,method,OA\nOpt,SL,sl,0.5\n")
    module = _Recorder(tmp_path).module()

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("no W&B server")

    module.init = refuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    assert log_table_if_enabled(["--wandb.enabled=true"], table, {}, "t1") is None
    err = capsys.readouterr().err
    assert err == "cloudxfer run: warning: the table was not logged to W&B: no W&B server\n"
    assert table.is_file()
