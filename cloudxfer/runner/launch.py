"""Run the runner's ``cloudxfer fit`` / ``test`` commands without paying the imports each time.

Importing torch, Lightning and cloudxfer takes about 10 s on a 2-core machine, longer than a
smoke run's training; a table of 60 runs paid it 120 times. The runner therefore starts each
command in a child forked from multiprocessing's *forkserver*, a process that imported those
modules once and never runs a torch operation, so every child starts as a fresh process would
(no thread pool, random state or CUDA context to inherit) and runs ``cloudxfer.cli.main`` as
the console script does, with the runner's current environment and working folder. Where
the platform has no forkserver, or ``CLOUDXFER_RUNNER_FORK=0``, each command is a subprocess.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from functools import cache
from multiprocessing.context import ForkServerContext

__all__ = ["FORK_ENV", "PRELOAD", "launch"]

PRELOAD = ["cloudxfer.lightning_cli", "cloudxfer.stages", "datamodules"]
"""Modules the forkserver imports once for every command it forks."""
FORK_ENV = "CLOUDXFER_RUNNER_FORK"
"""``0``: run every command as a subprocess (the console script's own start-up)."""


@cache
def _forkserver() -> ForkServerContext | None:
    """Return the forkserver context with the preloads set (None: not available here)."""
    if os.environ.get(FORK_ENV, "1") == "0":
        return None
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, ForkServerContext)
    context.set_forkserver_preload(PRELOAD)
    return context


def _command(argv: list[str], env: dict[str, str], cwd: str) -> None:
    """Run ``cloudxfer <argv>`` in this forked child as the console script would; exit."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["cloudxfer", *argv]
    from cloudxfer.cli import main

    sys.exit(main(argv))


def launch(args: list[str], env: dict[str, str] | None = None) -> int:
    """Run one command line (``python -m cloudxfer <subcommand> ...``); return its exit code.

    ``env``: the command's whole environment (None: this process's, as it is now).
    """
    context = _forkserver()
    prefix = [sys.executable, "-m", "cloudxfer"]
    if context is None or args[:3] != prefix:
        return subprocess.run(args, env=env, check=False).returncode
    environment = dict(os.environ if env is None else env)
    child = context.Process(target=_command, args=(args[3:], environment, os.getcwd()))
    child.start()
    child.join()
    return int(child.exitcode if child.exitcode is not None else 1)
