"""``cloudxfer prepare sen12ms|pairs|source``: check the official files once, write a data file.

Each sub-command imports its worker only when it runs, so ``cloudxfer prepare --help`` loads
neither torch nor Lightning.
"""

from __future__ import annotations

import argparse
import importlib
import shlex

__all__ = ["main"]

KINDS: dict[str, tuple[str, str]] = {
    "sen12ms": (
        "cloudxfer.prepare.sen12ms",
        "SEN12MS season folders + the toolbox's labels and splits -> DATA.yaml",
    ),
    "pairs": (
        "cloudxfer.prepare.pairs",
        "real cloudy pairs in the Hunan-style layout (opt/, sar/, masks/) -> DATA.yaml",
    ),
    "source": (
        "cloudxfer.prepare.source",
        "check a source image folder (NWPU-RESISC45, AID) and name its role",
    ),
}
"""Each kind of data: the module with its ``add_arguments`` and ``run``, and its summary."""


def main(argv: list[str] | None = None) -> int:
    """Parse ``prepare KIND ...`` and run that kind's preparation."""
    parser = argparse.ArgumentParser(
        prog="cloudxfer prepare",
        description="Check the official files once and write the data file every later "
        "command reads (docs/real_data.md).",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    for name, (module, summary) in KINDS.items():
        sub = kinds.add_parser(name, help=summary, description=summary)
        # the options live beside the code that reads them; imported light (no torch)
        importlib.import_module(module).add_arguments(sub)
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["cloudxfer", "prepare", *(argv or [])])
    return int(importlib.import_module(KINDS[args.kind][0]).run(args))
