"""Fork server of the kill tests: each ``cloudxfer`` command runs in a forked, killable child.

Importing torch, Lightning and cloudxfer takes about 10 s on a 2-core machine, longer than a
tiny fit; this process imports them once, then forks one child per command, which runs
``cloudxfer.cli.main(args)`` as the console script would (its own environment, output to a log
file, stdin closed) and ends with its exit code. The server itself runs no torch operation, so
each child starts as a fresh process would, with no thread pool to inherit.

Protocol: one JSON request per line on stdin, ``{"args": [...], "env": {...}, "log": PATH,
"kill_after": SECONDS | null, "kill_when": PATH | null, "delay": SECONDS}``; the server SIGKILLs
the child ``kill_after`` seconds after it forked it, or ``delay`` seconds after ``kill_when``
appeared, and answers one JSON line ``{"rc": CODE, "seconds": WALL}`` (``rc`` -9: killed).
It prints ``ready`` once its imports are done and ends at end of input.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

PRELOAD = ("cloudxfer.lightning_cli", "cloudxfer.cli", "cloudxfer.stages", "datamodules")


def _child(request: dict[str, Any]) -> None:
    """Run one command in this forked child and leave with its exit code (never returns)."""
    rc = 1
    try:
        os.environ.update(request.get("env") or {})
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        from cloudxfer.cli import main

        rc = main(list(request["args"]))
    except SystemExit as stop:
        rc = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _run(request: dict[str, Any]) -> dict[str, Any]:
    """Fork a child for ``request``, kill it when asked, and wait for it."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(request)
    kill_after = request.get("kill_after")
    kill_when = request.get("kill_when")
    delay = float(request.get("delay") or 0.0)
    seen: float | None = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        now = time.monotonic()
        if kill_when and seen is None and Path(kill_when).exists():
            seen = now
        due = (kill_after is not None and now - start >= kill_after) or (
            seen is not None and now - seen >= delay
        )
        if due:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return {"rc": rc, "seconds": round(time.monotonic() - start, 3)}


def serve() -> None:
    """Import once, then answer requests from stdin until it ends."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(_run(json.loads(line))), flush=True)


if __name__ == "__main__":
    serve()
