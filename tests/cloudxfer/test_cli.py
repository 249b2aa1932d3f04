"""The top-level command: its help lists every subcommand; a bad config is one clear error."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from cloudxfer.cli import COMMANDS, LIGHTNING, main
from cloudxfer.lightning_cli import progress_bar


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    names = list(COMMANDS)
    assert {"fit", "validate", "test", "predict"} <= set(names)
    for name in names:
        (line,) = [line for line in out.splitlines() if line.strip().startswith(name + " ")]
        assert len(line.split(maxsplit=1)[1]) > 10  # a one-line summary follows the name
    assert main([]) == 2 and "usage: cloudxfer COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name", [name for name, command in COMMANDS.items() if command.entry != LIGHTNING]
)
def test_help_of_a_command_that_does_not_train_imports_no_lightning(name: str) -> None:
    # `cloudxfer --help` and each non-Lightning command's help stay light: Lightning (seconds
    # to import on 2 cores) is imported only where a command runs it
    code = (
        "import sys\n"
        "from cloudxfer.cli import main\n"
        f"try:\n    main([{name!r}, '--help'])\n"
        "except SystemExit:\n    pass\n"
        "main(['--help'])\n"
        "print('LOADED' if {'lightning', 'torch'} & set(sys.modules) else 'LIGHT')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "LIGHT"


def test_an_unknown_command_is_one_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ("trainer:\n  max_epoch: 3\n", "trainer.max_epoch"),
        ("trainer:\n  max_epochs: many\n", "trainer.max_epochs"),
        ("trainr:\n  max_epochs: 3\n", "trainr.max_epochs"),
        ("model:\n  init_args:\n    temprature: 2.0\n", "temprature"),
        ("model:\n  init_args:\n    temperature: hot\n", "temperature"),
        ("data:\n  init_args:\n    val_fraction: [0.1]\n", "val_fraction"),
    ],
    ids=["unknown-key", "wrong-type", "unknown-section", "unknown-model-arg",
         "wrong-model-arg-type", "wrong-data-arg-type"],
)  # fmt: skip
def test_a_hostile_config_is_one_error_naming_its_key_and_touches_no_folder(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config: str,
    key: str,
) -> None:
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])  # in-process: the CLI reads only our args
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(config)
    args = [
        "fit",
        *("--config", str(EXPERIMENTS / "profiles" / "smoke.yaml")),
        *("--config", str(EXPERIMENTS / "methods" / "aux_sar.yaml")),
        f"--data={EXPERIMENTS / 'data' / 'sen12ms_cloud.yaml'}",
        *("--config", str(hostile)),
        f"--profile.run_root={tmp_path / 'runs'}",
        f"--profile.data_root={tmp_path / 'data'}",
        f"--trainer.default_root_dir={tmp_path / 'run'}",
    ]
    with pytest.raises(SystemExit) as exited:  # any other exception fails: no traceback
        main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    message = err[err.index(line) :]  # the error and its details, after the usage
    assert f"'{key}'" in message or f'"{key}"' in message, message
    assert [p.name for p in tmp_path.iterdir()] == ["hostile.yaml"]  # no run folder, no file


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_where_a_terminal_is_unless_configured() -> None:
    assert progress_bar(None, _Terminal()) is True
    assert progress_bar(None, io.StringIO()) is False  # a log file: the runner's lines only
    assert progress_bar(False, _Terminal()) is False  # as configured, either way
    assert progress_bar(True, io.StringIO()) is True
