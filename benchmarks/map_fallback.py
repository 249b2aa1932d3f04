"""OA of the map's fallback policies for missing or fully clouded optical, on test tiles.

Every test tile of the target data (the split the demo's runs were tested on) is scored as a
fully clouded tile: its cloud mask is all cloud, so ``cloudxfer map``'s window classifier
applies the policy. Rows:

- ``sar_auxiliary``: the F1 SAR auxiliary's prediction from the tile's SAR;
- ``cloud_optical``: the F2 target model on a full thick cloud + the tile's SAR;
- reference rows (not fallbacks): the target model on the tile's optical as tested (pasted
  clouds on half of the tiles) and on an all-zero optical (what "no image" would be without
  a policy: out of the training distribution).

Also printed on the test tiles whose pasted cloud fraction exceeds the threshold (the
demo's pasted clouds cover at most 70 %, so there may be none).

    python -m benchmarks.map_fallback --target-ckpt runs/demo/runs/target/checkpoints/best.ckpt \
        --sar-ckpt runs/demo/runs/aux_sar/checkpoints/best.ckpt --data runs/demo/data/target
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import target_datamodule
from cloudxfer.mapping.predictor import (
    DEFAULT_FALLBACK_THRESHOLD,
    TARGET_STAGES,
    FallbackPolicy,
    MapModel,
    WindowClassifier,
)
from cloudxfer.runtime import configure_threads
from datamodules.clouds import blend
from datamodules.normalisation import S2_DN_MAX, scale_s2
from datamodules.paired import DecodedTiles

BATCH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target-ckpt", type=Path, required=True)
    parser.add_argument("--sar-ckpt", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="target data (SEN12MS layout)")
    parser.add_argument("--data-seed", type=int, default=0, help="the runs' profile data_seed")
    parser.add_argument("--threshold", type=float, default=DEFAULT_FALLBACK_THRESHOLD)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_threads(args.threads)
    target = MapModel.load(args.target_ckpt, TARGET_STAGES, "opt+sar")
    sar = MapModel.load(args.sar_ckpt, frozenset({"auxiliary"}), "sar", target.class_names)
    with tempfile.TemporaryDirectory() as store:
        dm = target_datamodule(args.data, False, Path(store), test_seed=args.data_seed)
        dm.setup("test")
        dataset = dm.subset_dataset("test")
    assert isinstance(dataset.source, DecodedTiles) and dataset.clouds is not None
    opt, tested, sar_db, labels, fractions = [], [], [], [], []
    for tile in dataset.tiles:
        arrays = dataset.source.reader.read_tile(tile)
        layer = dataset.clouds.layer(tile.id, arrays.opt_dn.shape[-1])
        rgb = scale_s2(arrays.opt_dn)
        opt.append(arrays.opt_dn.astype(np.float32))
        tested.append((rgb if layer is None else blend(rgb, layer)) * S2_DN_MAX)
        sar_db.append(arrays.sar_db)
        labels.append(tile.label)
        fractions.append(0.0 if layer is None else layer.fraction)
    y, frac = np.array(labels), np.array(fractions)
    n, size = len(y), opt[0].shape[-1]
    valid, clouded = np.ones((n, size, size), bool), np.ones((n, size, size), bool)
    policies = {
        kind: WindowClassifier(
            target,
            FallbackPolicy(kind, args.threshold, str(args.sar_ckpt)),
            sar,  # type: ignore[arg-type]
        )
        for kind in ("none", "sar_auxiliary", "cloud_optical")
    }
    rows = {
        "sar_auxiliary (fallback)": (policies["sar_auxiliary"], np.stack(opt), clouded),
        "cloud_optical (fallback)": (policies["cloud_optical"], np.stack(opt), clouded),
        "reference: optical as tested": (policies["none"], np.stack(tested), None),
        "reference: all-zero optical": (policies["none"], np.zeros_like(np.stack(opt)), None),
    }
    real = frac > args.threshold
    print(f"test tiles: {n}; with a pasted cloud fraction > {args.threshold}: {int(real.sum())}")
    print("| policy | OA, all test tiles fully clouded (%) | OA, tiles clouded > threshold (%) |")
    print("|---|---|---|")
    sar_all = np.stack(sar_db)
    for name, (clf, optical, cloud) in rows.items():
        preds = np.concatenate([
            clf(optical[s], sar_all[s], valid[s], None if cloud is None else cloud[s])
            .probs.argmax(axis=1)
            for s in (slice(i, i + BATCH) for i in range(0, n, BATCH))
        ])  # fmt: skip
        oa = 100 * float((preds == y).mean())
        oa_real = f"{100 * float((preds[real] == y[real]).mean()):.2f}" if real.any() else "-"
        print(f"| {name} | {oa:.2f} | {oa_real} |")


if __name__ == "__main__":
    main()
