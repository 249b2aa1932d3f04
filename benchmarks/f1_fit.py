"""Why F1 students fit their pseudo-labels slowly: the same student, the same tiles, other targets.

Trains the F1 optical student exactly as the stage does (same network, SGD settings, cosine
schedule, batch, channels-last) on the stage's training tiles (the datamodule's ``fit``
subset), once per target kind, and prints after every epoch how well it fits its own
targets on those tiles (eval mode) and how well it predicts the held-out tiles' targets:

- ``pseudo``: the frozen f_S's hard pseudo-labels on the clouded optical tile, filtered as F1
  filters them (what the stage learns);
- ``labels``: the data set's labels of the same tiles (a diagnostic only: a labelling that
  follows the scenes' visual classes);
- ``shuffled``: the pseudo-labels permuted across tiles (a labelling with no relation to the
  images, which can only be memorised).

Comparing the three curves separates "the student cannot learn at all" (all slow) from "the
pseudo-labels are hard to learn" (``pseudo`` as slow as ``shuffled``, ``labels`` fast).

Usage (after a chain run, e.g. ``make demo``)::

    python -m benchmarks.f1_fit --run-root runs/demo/runs --data runs/demo/data/target \\
        --epochs 20
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from cloudxfer.checkpoints import load_frozen_model
from cloudxfer.losses import confidence_mask
from cloudxfer.models import SceneClassifier
from cloudxfer.runtime import configure_threads
from datamodules import CloudConfig, Sen12msCloudDataModule, Standardisation

KINDS: tuple[str, ...] = ("pseudo", "labels", "shuffled")
DATA_YAML = Path(__file__).resolve().parents[1] / "experiments" / "data" / "sen12ms_cloud.yaml"


def load_tiles(data: Path, seed: int) -> dict[str, dict[str, Tensor]]:
    """The F1 stage's ``fit`` and ``val`` tiles, with the default data config's settings."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(DATA_YAML)["init_args"]
    module = Sen12msCloudDataModule(
        root=str(data),
        classes=list(config["classes"]),
        standardisation=Standardisation(**OmegaConf.to_container(config["standardisation"])),
        clouds=CloudConfig(
            cloudy_share=config["clouds"]["cloudy_share"],
            coverage=config["clouds"]["coverage"],
            thin_share=config["clouds"]["thin_share"],
            seed=seed,
        ),
        split_seed=seed,
        val_fraction=config["val_fraction"],
        train_subset="unlabelled",
    )
    out: dict[str, dict[str, Tensor]] = {}
    for subset in ("fit", "val"):
        dataset = module.subset_dataset(subset)
        samples = [dataset[i] for i in range(len(dataset))]
        out[subset] = {
            key: torch.stack([s[key] for s in samples])
            for key in ("image_opt", "image_sar", "label")
        }
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, images: Tensor, batch: int = 256) -> Tensor:
    """Class predictions of ``model`` (eval mode) on the optical images."""
    model.eval()
    parts = [
        model({"image_opt": images[i : i + batch].contiguous(memory_format=torch.channels_last)})
        for i in range(0, len(images), batch)
    ]
    return torch.cat(parts).argmax(1)


def fit_curve(
    images: Tensor,
    targets: Tensor,
    keep: Tensor,
    val_images: Tensor,
    val_targets: Tensor,
    args: argparse.Namespace,
    classes: int,
) -> list[tuple[float, float, float]]:
    """Train a fresh student on (images, targets)[keep]; per epoch: loss, train fit, val fit."""
    torch.manual_seed(args.seed)
    model = SceneClassifier(args.backbone, ["image_opt"], classes)
    model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=args.epochs)
    x, y = images[keep], targets[keep]
    gen = torch.Generator().manual_seed(args.seed)
    curve = []
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(x), args.batch_size):
            index = order[start : start + args.batch_size]
            batch = {"image_opt": x[index].contiguous(memory_format=torch.channels_last)}
            loss = F.cross_entropy(model(batch), y[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, count = total + float(loss.detach()) * len(index), count + len(index)
        schedule.step()
        train_fit = float((predict(model, x) == y).float().mean())
        val_fit = float((predict(model, val_images) == val_targets).float().mean())
        curve.append((total / count, train_fit, val_fit))
    return curve


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-root", type=Path, required=True, help="chain runs/ folder")
    parser.add_argument("--data", type=Path, required=True, help="the chain's target data")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--backbone", default="googlenet")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Print one fit curve per target kind."""
    args = parse_args(argv)
    configure_threads(args.threads, 0)
    start = time.time()
    tiles = load_tiles(args.data, args.seed)
    teacher, meta = load_frozen_model(
        args.run_root / "source_finetune" / "checkpoints" / "best.ckpt",
        stages={"source_finetune"},
        modality="opt",
    )
    classes = len(meta["class_names"])
    pseudo: dict[str, Tensor] = {}
    keep: dict[str, Tensor] = {}
    with torch.no_grad():
        for subset, data in tiles.items():
            logits = torch.cat(
                [
                    teacher({"image_opt": data["image_opt"][i : i + 256]})
                    for i in range(0, len(data["image_opt"]), 256)
                ]
            )
            pseudo[subset] = logits.argmax(1)
            keep[subset] = confidence_mask(logits, "max_prob", 0.5)
    fit, val = tiles["fit"], tiles["val"]
    print(
        f"F1 optical student {args.backbone}, SGD lr {args.lr} momentum 0.9 wd "
        f"{args.weight_decay}, cosine over {args.epochs} epochs, batch {args.batch_size}, "
        f"seed {args.seed}; {len(fit['label'])} training tiles "
        f"({int(keep['fit'].sum())} kept by the filter), {len(val['label'])} held out"
    )
    teacher_oa = float((pseudo["fit"] == fit["label"]).float().mean())
    print(f"f_S pseudo-labels agree with the data set's labels on {100 * teacher_oa:.1f} % of them")
    gen = torch.Generator().manual_seed(args.seed)
    targets = {
        "pseudo": (pseudo["fit"], keep["fit"], pseudo["val"], keep["val"]),
        "labels": (fit["label"], keep["fit"], val["label"], keep["val"]),
        "shuffled": (
            pseudo["fit"][torch.randperm(len(pseudo["fit"]), generator=gen)],
            keep["fit"],
            pseudo["val"],
            torch.zeros_like(keep["val"]),
        ),
    }
    curves = {}
    for kind in args.kinds:
        y, k, val_y, val_k = targets[kind]
        val_keep = val_k if bool(val_k.any()) else torch.ones_like(val_k)
        curves[kind] = fit_curve(
            fit["image_opt"], y, k, val["image_opt"][val_keep], val_y[val_keep], args, classes
        )
    header = "epoch" + "".join(f" | {k:>8s} loss  fit %  val %" for k in args.kinds)
    print(header)
    for epoch in range(args.epochs):
        cells = "".join(
            f" | {curves[k][epoch][0]:13.3f} {100 * curves[k][epoch][1]:6.1f} "
            f"{100 * curves[k][epoch][2]:6.1f}"
            for k in args.kinds
        )
        print(f"{epoch:5d}{cells}")
    print("(fit %: agreement with its own targets on its training tiles, eval mode; val %: on")
    print(" the held-out tiles' targets, for 'shuffled' the unshuffled ones)")
    print(f"total {time.time() - start:.0f} s")
    assert all(math.isfinite(c[0]) for curve in curves.values() for c in curve)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
