"""One cold-start epoch of the target train loader in a fresh process; prints JSON tiles/s.

Timed from the datamodule's construction (after imports, which are the same either way) to
the end of one pass over the train loader: scanning, validation or store opening, cloud
pasting and standardisation included.

    python benchmarks/loader_epoch.py --root DATA --store-dir DIR --store 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import target_datamodule
from cloudxfer.runtime import configure_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--store-dir", type=Path, required=True)
    parser.add_argument("--store", type=int, choices=(0, 1), default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    start = time.perf_counter()
    dm = target_datamodule(
        args.root, bool(args.store), args.store_dir, batch_size=args.batch, train_subset="train"
    )
    dm.setup("fit")
    tiles = sum(len(batch["id"]) for batch in dm.train_dataloader())
    seconds = time.perf_counter() - start
    print(json.dumps({"tiles": tiles, "seconds": seconds, "tiles_per_s": tiles / seconds}))


if __name__ == "__main__":
    main()
