"""What made a run or a table: the code's revision (recorded, never part of an id)."""

from __future__ import annotations

import subprocess
from functools import cache

from cloudxfer.runner.methods import EXPERIMENTS

__all__ = ["git_revision"]


@cache
def git_revision() -> str:
    """Return the repository's commit (``-dirty`` with local changes), or ``unknown``."""
    repo = EXPERIMENTS.parent
    command = ["git", "-C", str(repo), "describe", "--always", "--dirty"]
    try:
        # Popen, not run(): callers (and tests) may stand in for run() to fake the runs
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as git:
            out, _ = git.communicate()
    except OSError:
        return "unknown"
    rev = out.decode().strip()
    return rev if git.returncode == 0 and rev else "unknown"
