"""Calibrate the simulated data's difficulty with plain supervised ResNet-18 baselines.

The models here are deliberately *not* the ones under comparison in the project (no
``cloudxfer.stages`` / ``cloudxfer.models``): a torchvision ResNet-18 trained from scratch with
a plain PyTorch loop, Adam with a one-cycle (warm-up + cosine) schedule, random flips and
transposes, and a fixed seed. Data come through the project's datamodules, so the numbers
describe what the compared models will see. Defaults take about 6-7 minutes on 2 CPU cores
(one torch thread: faster than two when another job shares the cores).

Rows printed (test overall accuracy, OA):

1. all labelled train tiles, clear optical RGB;
2. all labelled train tiles, SAR alone (VV, VH, VV-VH), with its confusion matrix;
3. the model of (1) on test tiles with thick cloud over about half of every tile;
4. only the labelled subset (20 tiles per class), clear optical RGB;
5. a model trained on the source ImageFolder set, frozen, with a new linear head trained on
   the labelled clear target tiles (and, for reference, the same head on a frozen
   randomly initialised encoder).

Usage::

    python benchmarks/calibrate_simulator.py --data /tmp/calib/target --source /tmp/calib/source
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from datamodules import (
    CloudConfig,
    Sen12msCloudDataModule,
    SourceScenesDataModule,
    Standardisation,
    compute_standardisation,
)
from datamodules.source_scenes import SourceSubset
from datamodules.splits import SubsetName

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CLEAR = CloudConfig(cloudy_share=0.0)
THICK_HALF = CloudConfig(cloudy_share=1.0, coverage=0.5, thin_share=0.0)
SOURCE_IMAGE_SIZE = 64
FEATURE_DIM = 512


@dataclass
class TileSet:
    """Cached tensors of one subset (scaled on load, standardised in place afterwards)."""

    opt: torch.Tensor
    sar: torch.Tensor
    label: torch.Tensor
    cloud_fraction: torch.Tensor


@dataclass
class Result:
    """One row of the results table."""

    name: str
    train: str
    test: str
    oa: float


def read_classes(root: Path) -> list[str]:
    """Return the class names listed in ``root/classes.txt``."""
    lines = (root / "classes.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def load_target(
    root: Path, classes: list[str], clouds: CloudConfig, subsets: Sequence[SubsetName], seed: int
) -> dict[str, TileSet]:
    """Load (scaled, not yet standardised) target subsets into memory.

    Args:
        root: SEN12MS-layout dataset root.
        classes: Class names in index order.
        clouds: Cloud pasting settings.
        subsets: Subsets to cache (``train``, ``labelled``, ``test``).
        seed: Split and cloud seed.

    Returns:
        Tensors per subset.

    """
    module = Sen12msCloudDataModule(
        root=str(root),
        classes=classes,
        standardisation=Standardisation.identity(),
        clouds=replace(clouds, seed=seed),
        split_seed=seed,
        train_subset="train",
    )
    module.setup()
    out: dict[str, TileSet] = {}
    for subset in subsets:
        dataset = module.subset_dataset(subset)
        samples = [dataset[i] for i in range(len(dataset))]
        out[subset] = TileSet(
            opt=torch.stack([s["image_opt"] for s in samples]),
            sar=torch.stack([s["image_sar"] for s in samples]),
            label=torch.stack([s["label"] for s in samples]),
            cloud_fraction=torch.stack([s["cloud_fraction"] for s in samples]),
        )
    return out


def standardise_sets(sets: Sequence[TileSet], stats: Standardisation) -> None:
    """Standardise the tensors of every set in place with ``stats``."""
    opt_m = torch.tensor(stats.opt_mean).view(1, 3, 1, 1)
    opt_s = torch.tensor(stats.opt_std).view(1, 3, 1, 1)
    sar_m = torch.tensor(stats.sar_mean).view(1, 3, 1, 1)
    sar_s = torch.tensor(stats.sar_std).view(1, 3, 1, 1)
    for tiles in sets:
        tiles.opt = (tiles.opt - opt_m) / opt_s
        tiles.sar = (tiles.sar - sar_m) / sar_s


def load_source(root: Path, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Load the source train/val images (64 px, ImageNet mean/std) into memory."""
    module = SourceScenesDataModule(
        root=str(root),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=SOURCE_IMAGE_SIZE,
        split_seed=seed,
        augment=False,
    )
    module.setup()
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    subsets: tuple[SourceSubset, ...] = ("train", "val")
    for subset in subsets:
        dataset = module.subset_dataset(subset)
        samples = [dataset[i] for i in range(len(dataset))]
        out[subset] = (
            torch.stack([s["image_opt"] for s in samples]),
            torch.stack([s["label"] for s in samples]),
        )
    return out


def dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Apply a random flip/transpose (one of the 8 dihedral maps) to each image."""
    n = x.shape[0]
    flips = torch.rand(3, n, generator=gen) < 0.5
    x = torch.where(flips[0].view(n, 1, 1, 1), x.flip(-1), x)
    x = torch.where(flips[1].view(n, 1, 1, 1), x.flip(-2), x)
    return torch.where(flips[2].view(n, 1, 1, 1), x.transpose(-1, -2), x)


def train_model(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    epochs: int,
    seed: int,
    batch_size: int,
    lr: float,
) -> nn.Module:
    """Train a ResNet-18 from scratch (Adam, cosine schedule, dihedral augmentation).

    Args:
        x: Images (N, 3, H, W), standardised.
        y: Class indices (N,).
        num_classes: Output classes.
        epochs: Passes over the data.
        seed: Seeds the initialisation, the shuffling and the augmentation.
        batch_size: Batch size.
        lr: Peak learning rate.

    Returns:
        The trained model in eval mode.

    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = resnet18(num_classes=num_classes)
    steps = epochs * math.ceil(len(x) / batch_size)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=steps, pct_start=0.15
    )
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:
                continue  # BatchNorm needs more than one sample
            loss = F.cross_entropy(model(dihedral(x[index], gen)), y[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Return the predicted class of every image."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Return the pooled 512-d encoder features of a ResNet-18 (head bypassed)."""
    model.eval()
    fc = model.fc
    model.fc = nn.Identity()
    try:
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.fc = fc


def linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, seed: int, steps: int = 500
) -> nn.Linear:
    """Train a new linear head on frozen features (full batch, Adam, weight decay)."""
    torch.manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    head = nn.Linear(FEATURE_DIM, num_classes)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        loss = F.cross_entropy(head((train_x - mean) / std), train_y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():  # fold the feature standardisation into the head
        head.weight.div_(std)
        head.bias.sub_(head.weight @ mean)
    return head


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Overall accuracy in percent."""
    return 100.0 * float((pred == y).float().mean())


def confusion(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (y.numpy(), pred.numpy()), 1)
    return matrix


def print_confusion(title: str, matrix: np.ndarray, classes: Sequence[str]) -> None:
    """Print a confusion matrix with per-class recall."""
    short = [name[:5] for name in classes]
    print(f"\n{title} (rows true, columns predicted; recall %)")
    print(f"{'':16s}" + "".join(f"{s:>6s}" for s in short) + f"{'recall':>8s}")
    for index, (name, row) in enumerate(zip(classes, matrix, strict=True)):
        recall = 100.0 * row[index] / max(row.sum(), 1)
        print(f"{name[:16]:16s}" + "".join(f"{v:6d}" for v in row) + f"{recall:8.1f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="SEN12MS-layout target set")
    parser.add_argument("--source", type=Path, required=True, help="ImageFolder source set")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the all-label runs")
    parser.add_argument(
        "--labelled-epochs", type=int, default=None, help="epochs on 20/class (default 4x)"
    )
    parser.add_argument("--source-epochs", type=int, default=None, help="default: --epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the calibration and print the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    labelled_epochs = args.labelled_epochs or 4 * args.epochs
    source_epochs = args.source_epochs or args.epochs
    classes = read_classes(args.data)
    n = len(classes)

    def log(message: str) -> None:
        print(f"[{time.time() - start:6.0f} s] {message}", file=sys.stderr, flush=True)

    clear = load_target(args.data, classes, CLEAR, ("train", "labelled", "test"), args.seed)
    cloudy = load_target(args.data, classes, THICK_HALF, ("test",), args.seed)["test"]
    train, labelled, test = clear["train"], clear["labelled"], clear["test"]
    stats = compute_standardisation([{"image_opt": train.opt, "image_sar": train.sar}])
    standardise_sets([train, labelled, test, cloudy], stats)
    source = load_source(args.source, args.seed)
    log(
        f"loaded target train {len(train.label)}, labelled {len(labelled.label)}, "
        f"test {len(test.label)}; source train {len(source['train'][1])}, "
        f"val {len(source['val'][1])}"
    )

    fit = dict(seed=args.seed, batch_size=args.batch_size, lr=args.lr)
    results: list[Result] = []

    def add(name: str, train_on: str, test_on: str, oa: float) -> None:
        results.append(Result(name, train_on, test_on, oa))
        log(f"{name}: {oa:.1f} %")

    counts = torch.bincount(test.label, minlength=n)
    add("chance: uniform (1 / classes)", "-", "test", 100.0 / n)
    add("chance: majority class", "-", "test", 100.0 * float(counts.max()) / len(test.label))

    opt_model = train_model(train.opt, train.label, n, args.epochs, **fit)
    opt_pred = predict(opt_model, test.opt)
    add(
        "(1) optical RGB, all labels", "train, clear", "test, clear", accuracy(opt_pred, test.label)
    )
    sar_model = train_model(train.sar, train.label, n, args.epochs, **fit)
    sar_pred = predict(sar_model, test.sar)
    add("(2) SAR VV/VH/ratio, all labels", "train", "test", accuracy(sar_pred, test.label))
    cover = f"test, cloud {100 * float(cloudy.cloud_fraction.mean()):.0f} %"
    oa = accuracy(predict(opt_model, cloudy.opt), cloudy.label)
    add("(3) model (1) on thick cloud ~50 %", "train, clear", cover, oa)
    small_model = train_model(labelled.opt, labelled.label, n, labelled_epochs, **fit)
    oa = accuracy(predict(small_model, test.opt), test.label)
    add("(4) optical RGB, 20 labels/class", "labelled, clear", "test, clear", oa)

    src_x, src_y = source["train"]
    src_model = train_model(src_x, src_y, int(src_y.max()) + 1, source_epochs, **fit)
    oa = accuracy(predict(src_model, source["val"][0]), source["val"][1])
    add("(5a) source model on source val", "source train", "source val", oa)
    torch.manual_seed(args.seed)
    encoders = (
        ("(5) source encoder + linear head", src_model),
        ("(5r) random encoder + linear head", resnet18(num_classes=n)),
    )
    for name, encoder in encoders:
        head = linear_probe(features(encoder, labelled.opt), labelled.label, n, args.seed)
        with torch.no_grad():
            pred = head(features(encoder, test.opt)).argmax(1)
        add(name, "labelled, clear", "test, clear", accuracy(pred, test.label))

    print(
        f"\nCalibration: data {args.data}, source {args.source}, seed {args.seed}, "
        f"epochs {args.epochs}/{labelled_epochs}/{source_epochs} (all/20-per-class/source), "
        f"ResNet-18 from scratch, Adam lr {args.lr}, batch {args.batch_size}"
    )
    print(f"{'setting':38s} {'train':16s} {'test':18s} {'OA %':>6s}")
    for row in results:
        print(f"{row.name:38s} {row.train:16s} {row.test:18s} {row.oa:6.1f}")
    print_confusion("(2) SAR confusion", confusion(sar_pred, test.label, n), classes)
    print_confusion("(1) optical confusion", confusion(opt_pred, test.label, n), classes)
    print(f"\ntotal time {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
