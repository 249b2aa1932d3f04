"""The kill points of the kill-and-resume tests: inert unset, exact when set."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from datamodules.faults import KILL_AT_ENV, KILL_TRACE_ENV, kill_point, parse_kill_spec
from datamodules.runfiles import write_json


def test_a_spec_names_a_point_and_its_count() -> None:
    assert parse_kill_spec("train_batch") == ("train_batch", 1)
    assert parse_kill_spec("train_batch:3") == ("train_batch", 3)
    assert parse_kill_spec("write:last.ckpt") == ("write:last.ckpt", 1)
    assert parse_kill_spec("write:last.ckpt:2") == ("write:last.ckpt", 2)
    for bad in ("", "train_batch:0", ":3"):
        with pytest.raises(ValueError, match=KILL_AT_ENV):
            parse_kill_spec(bad)


def _in_child(env: dict[str, str], calls: list[str]) -> int:
    """Call ``kill_point`` in a forked child; return its exit status (-9: killed)."""
    pid = os.fork()
    if pid == 0:
        os.environ.update(env)
        for name in calls:
            kill_point(name)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def test_the_process_is_killed_at_the_named_count_and_the_trace_lists_the_points(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "trace.txt"
    calls = ["a", "b", "a", "a"]
    assert _in_child({KILL_TRACE_ENV: str(trace)}, calls) == 0
    assert trace.read_text().split() == ["a:1", "b:1", "a:2", "a:3"]
    assert _in_child({KILL_AT_ENV: "a:2"}, calls) == -signal.SIGKILL
    assert _in_child({KILL_AT_ENV: "a:4"}, calls) == 0  # never reached
    assert _in_child({}, calls) == 0


def test_a_kill_between_write_and_rename_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "training.json"
    write_json(path, {"epochs": 1})
    pid = os.fork()
    if pid == 0:
        os.environ[KILL_AT_ENV] = "write:training.json"
        write_json(path, {"epochs": 2})
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert path.read_text() == '{\n  "epochs": 1\n}\n'  # the temporary file is left beside it
    write_json(path, {"epochs": 2})
    assert path.read_text() == '{\n  "epochs": 2\n}\n'
