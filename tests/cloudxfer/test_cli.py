"""The top-level command: its help lists every subcommand, one line each."""

from __future__ import annotations

import pytest

from cloudxfer.cli import COMMANDS, EXTRA_COMMANDS, main


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    names = ["fit", "validate", "test", "predict", *EXTRA_COMMANDS]
    assert set(names) == set(COMMANDS)  # no command without a help line, nor the reverse
    for name in names:
        (line,) = [line for line in out.splitlines() if line.strip().startswith(name + " ")]
        assert len(line.split(maxsplit=1)[1]) > 10  # a one-line summary follows the name
    assert main([]) == 2 and "usage: cloudxfer COMMAND" in capsys.readouterr().out
