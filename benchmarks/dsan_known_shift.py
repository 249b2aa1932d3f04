"""Score DSAN known-shift runs on the test tiles' thin-cloud images and on their clear twins.

The known-shift check (docs/baselines.md, "DSAN") trains on the labelled tiles' clear twins
and scores the thin-cloud test images. Scoring the same checkpoints on the clear twins of the
same test tiles separates what the thin cloud costs from what 20 labels per class allow:
for each run folder of ``cloudxfer run --dataset sen12ms_thin_cloud`` it prints the OA on the
thin-cloud images (the run's own test, recomputed) and on the clear twins, with the run's
data module rebuilt from its ``config.yaml`` (clear twins switched on).

Usage::

    python -m benchmarks.dsan_known_shift runs/dsan_known_shift/seed0/dsan_optical_no_lmmd \\
        runs/dsan_known_shift/seed0/dsan_optical
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from jsonargparse import ArgumentParser
from torch import nn

from cloudxfer.checkpoints import load_frozen_model

STREAMS = {"thin cloud": "image_opt", "clear twin": "image_opt_clear"}
"""What each score reads from a test sample (the network's input is ``image_opt``)."""


def run_datamodule(run: Path) -> Any:
    """Rebuild a run's data module from its ``config.yaml``, with the clear twins served."""
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data", required=True)
    init = {**dict(data.get("init_args") or {}), "clear_twins": True}
    config = parser.parse_object({"data": {"class_path": data["class_path"], "init_args": init}})
    return parser.instantiate(config)["data"]


@torch.no_grad()
def score(network: nn.Module, datamodule: Any) -> dict[str, tuple[int, int]]:
    """(correct, tiles) of ``network`` on each stream of the test tiles with a clear twin."""
    counts = dict.fromkeys(STREAMS, (0, 0))
    for batch in datamodule.test_dataloader():
        keep = batch["clear_available"].bool()
        labels = batch["label"][keep]
        for name, key in STREAMS.items():
            predictions = network({"image_opt": batch[key][keep]}).argmax(dim=1)
            correct, total = counts[name]
            counts[name] = (correct + int((predictions == labels).sum()), total + len(labels))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Print each run's OA on the thin-cloud test images and on their clear twins."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders (best.ckpt, config.yaml)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for run in args.runs:
        network, meta = load_frozen_model(run / "checkpoints" / "best.ckpt", stages={"dsan"})
        if meta["inputs"] != ["image_opt"]:
            raise SystemExit(f"{run}: not a known-shift run (it reads {meta['inputs']})")
        datamodule = run_datamodule(run)
        parts = [
            f"OA {name} {100 * correct / max(total, 1):.2f} % ({correct}/{total})"
            for name, (correct, total) in score(network, datamodule).items()
        ]
        print(f"{run.name}: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
