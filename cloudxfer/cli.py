"""The ``cloudxfer`` command: one table of subcommands, each imported only when it runs.

``cloudxfer fit --config experiments/profiles/quick.yaml --config experiments/methods/target.yaml
--data experiments/data/sen12ms_cloud.yaml`` trains one method (LightningCLI); ``cloudxfer
chain`` runs the whole chain; ``cloudxfer run`` a paper table; ``cloudxfer synth`` writes
simulated data. Lightning takes seconds to import, so ``cloudxfer --help`` and the help of every
command that does not train import none of it.
"""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple

__all__ = ["COMMANDS", "LIGHTNING", "Command", "main", "usage"]


class Command(NamedTuple):
    """A subcommand: its entry point (``module:function`` taking the arguments) and summary."""

    entry: str
    summary: str


LIGHTNING = "cloudxfer.lightning_cli:main"
"""LightningCLI's subcommands (fit, validate, test, predict) share one entry point."""

COMMANDS: dict[str, Command] = {
    "fit": Command(LIGHTNING, "train one method (Lightning CLI: --config PROFILE --config METHOD)"),
    "validate": Command(
        LIGHTNING, "score a checkpoint with the stage's loss on its held-out tiles"
    ),
    "test": Command(
        LIGHTNING, "score a checkpoint on the test split (test/metrics.json, predictions.csv)"
    ),
    "predict": Command(LIGHTNING, "write predictions.csv for the datamodule's predict_subset"),
    "synth": Command(
        "cloudxfer.sim.cli:main",
        "write simulated data: target pairs (SEN12MS or Hunan layout), source scenes",
    ),
    "prepare": Command(
        "cloudxfer.prepare.cli:main",
        "check official downloads once and write a data file (sen12ms, pairs, source)",
    ),
    "stats": Command(
        "cloudxfer.prepare.stats:main", "recompute a data file's standardisation from its tiles"
    ),
    "chain": Command(
        "cloudxfer.chain:main", "run the whole method on one seed and print its table (make demo)"
    ),
    "run": Command(
        "cloudxfer.runner.cli:main",
        "run registered methods over seeds, or a paper table (make table1..4)",
    ),
    "plot": Command(
        "cloudxfer.reporting.curves:main",
        "figures: losses (Fig. 8), cloudy-clear (Fig. 7), cloud-sweep (Fig. 9), confusion, "
        "convergence, pool (OA against the unlabelled pool)",
    ),
    "report": Command(
        "cloudxfer.reporting.report:main",
        "print runs' test metrics beside their training diagnostics",
    ),
    "compare": Command(
        "cloudxfer.reporting.compare:main",
        "paired comparisons of runs: per-seed differences, tile-level tests, Holm-corrected",
    ),
    "map": Command(
        "cloudxfer.mapping.options:main",
        "classify a whole S2/S1 scene pair with sliding windows into a class map GeoTIFF",
    ),
}
"""Every subcommand, its entry point and its one-line summary (``cloudxfer --help``)."""


def usage() -> str:
    """Return the top-level help: every subcommand, one line each."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {command.summary}" for name, command in COMMANDS.items()]
    return (
        "usage: cloudxfer COMMAND [options]\n\ncommands:\n" + "\n".join(lines)
        + "\n\n`cloudxfer COMMAND --help` lists a command's options."
    )  # fmt: skip


def _user_error(err: Exception) -> bool:
    """Whether ``err`` is bad input the user fixes (a data set or checkpoint), not a bug.

    The error classes are imported here, after the fact: the command that raised one has
    imported its module already, so this costs nothing and keeps start-up light.
    """
    from cloudxfer.checkpoints import CheckpointError
    from datamodules.errors import DataError

    return isinstance(err, (CheckpointError, DataError))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cloudxfer`` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"{usage()}\n\ncloudxfer: error: unknown command {args[0]!r}", file=sys.stderr)
        return 2
    module, _, function = command.entry.partition(":")
    entry = getattr(importlib.import_module(module), function)
    # LightningCLI reads sys.argv itself when given no args (DDP launchers re-run it).
    lightning_args = None if argv is None else args
    try:
        return int(entry(lightning_args if command.entry == LIGHTNING else args[1:]) or 0)
    except Exception as err:
        if not _user_error(err):
            raise
        # Bad input is the user's to fix: one line naming the file, not a traceback.
        print(f"cloudxfer: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
