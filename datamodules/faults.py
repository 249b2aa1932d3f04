"""Named kill points for the kill-and-resume tests: inert unless ``CLOUDXFER_TEST_KILL_AT`` is set.

Standard library only, at the bottom layer: the run-file writers of every command
(``datamodules.runfiles``) import it.

``CLOUDXFER_TEST_KILL_AT=<point>[:<n>]`` makes the process SIGKILL itself (no clean-up, no
``finally``, as a crash or an out-of-memory kill would) the ``n``-th time (default 1) it
reaches ``<point>``, counted within the process. The points:

- trainer events (:class:`cloudxfer.callbacks.KillPoints`, in the CLI's ``RunFiles`` callback):
  ``train_epoch_start``, ``train_batch`` (after a training batch), ``validation_start``,
  ``validation_batch`` (after a held-out batch: mid-validation), ``fit_end`` (before
  ``training.json`` is written), ``test_batch``;
- run files written through :func:`datamodules.runfiles.atomic_open` (checkpoints included):
  ``write:<file name>`` (the temporary file is complete, not yet renamed) and
  ``saved:<file name>`` (just renamed), e.g. ``write:last.ckpt``, ``saved:metrics.csv``;
- ``append:metrics.csv``: before rows are appended to ``metrics.csv``;
- the runner's (:mod:`cloudxfer.runner.executor`): ``runner:fitted`` (a run's fit finished
  and recorded, its test not yet run) and ``runner:copy`` (before each file copied from or
  into the share folder); its tables are run files (``write:table.csv``).

``CLOUDXFER_TEST_KILL_TRACE=<file>`` appends every point reached to ``<file>``, one
``<point>:<n>`` a line: the kill specs a run offers (the tests' sweep kills at each of them).

``tests/cloudxfer/test_kill_anywhere.py`` kills ``cloudxfer fit`` and ``test`` at these points
and checks that the re-run ends as an uninterrupted run does (docs/reliability.md).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["KILL_AT_ENV", "KILL_TRACE_ENV", "kill_point", "parse_kill_spec"]

KILL_AT_ENV = "CLOUDXFER_TEST_KILL_AT"
"""Environment variable naming the kill point (``<point>[:<n>]``); unset: no kill."""
KILL_TRACE_ENV = "CLOUDXFER_TEST_KILL_TRACE"
"""Environment variable naming a file that records every kill point reached; unset: none."""

_reached: Counter[str] = Counter()


def parse_kill_spec(spec: str) -> tuple[str, int]:
    """Split ``<point>[:<n>]`` into the point and its 1-based count (point names may hold ``:``).

    Raises:
        ValueError: for an empty point or a count below 1.

    """
    point, colon, count = spec.rpartition(":")
    if not colon or not count.isdigit():
        point, count = spec, "1"
    if not point or int(count) < 1:
        raise ValueError(f"{KILL_AT_ENV}={spec!r}: expected <point>[:<n>] with n >= 1")
    return point, int(count)


def kill_point(name: str) -> None:
    """SIGKILL this process if it reaches ``name`` for the time ``CLOUDXFER_TEST_KILL_AT`` names.

    Both variables are read at every call (a forked test process sets them after import); a
    no-op when neither is set.
    """
    spec = os.environ.get(KILL_AT_ENV)
    trace = os.environ.get(KILL_TRACE_ENV)
    if not spec and not trace:
        return
    _reached[name] += 1
    if trace:
        with open(trace, "a", encoding="utf-8") as file:
            file.write(f"{name}:{_reached[name]}\n")
    if spec and parse_kill_spec(spec) == (name, _reached[name]):
        os.kill(os.getpid(), signal.SIGKILL)
