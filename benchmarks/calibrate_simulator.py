"""Calibrate the simulated data's difficulty with plain supervised ResNet-18 baselines.

The models here are deliberately *not* the ones under comparison in the project (no
``cloudxfer.stages`` / ``cloudxfer.models``): a torchvision ResNet-18 trained from scratch with
a plain PyTorch loop, Adam with a one-cycle (warm-up + cosine) schedule, random flips and
transposes. Data come through the project's datamodules, so the numbers describe what the
compared models will see. Every model is trained once per training seed (``--train-seeds``,
default 0 1 2); the figures are their mean and std, and the targets of the regime the method
exists for (``TARGETS``) are checked on the mean.

Rows printed (test overall accuracy, OA), with the calibration figure each one gives:

1. R1: all labelled train tiles, clear optical RGB;
2. R2: all labelled train tiles, SAR alone (VV, VH, VV-VH), with its confusion matrix;
3. R5: the model of (1) on test tiles with thick cloud over about half of every tile;
4. R3: only the labelled subset (20 tiles per class), clear optical RGB, from scratch;
5. R4: a model trained on the source ImageFolder set (R4_source_val: its OA on the source val
   split), frozen, with a new linear head trained on the labelled clear target tiles (and, for
   reference, the same head on a frozen randomly initialised encoder).

Usage::

    python -m benchmarks.calibrate_simulator --data /tmp/calib/target --source /tmp/calib/source \
        --json calibration.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
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
    flips = (torch.rand(3, n, generator=gen) < 0.5).to(x.device)
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
    device: str = "cpu",
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
        device: Where to train (the recorded figures are CPU runs; a GPU explores faster).

    Returns:
        The trained model in eval mode.

    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = resnet18(num_classes=num_classes).to(device, memory_format=torch.channels_last)
    x, y = x.to(device), y.to(device)
    steps = epochs * math.ceil(len(x) / batch_size)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=steps, pct_start=0.15
    )
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size].to(device)
            if len(index) < 2:
                continue  # BatchNorm needs more than one sample
            batch = dihedral(x[index], gen).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(batch), y[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Return the predicted class of every image (on the CPU)."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat(
        [
            model(x[i : i + batch_size].to(device)).argmax(1).cpu()
            for i in range(0, len(x), batch_size)
        ]
    )


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Return the pooled 512-d encoder features of a ResNet-18 (head bypassed), on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    fc = model.fc
    model.fc = nn.Identity()
    try:
        return torch.cat(
            [model(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
        )
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


FIGURES: tuple[str, ...] = ("R1", "R2", "R3", "R4", "R5")
TARGETS: dict[str, str] = {
    "R1": "clear optical, all labels: 80-92 % OA",
    "R2": "SAR alone, all labels: 50-70 % OA",
    "R3": "20 labels per class from scratch: at least 25 points below R1",
    "R4": "frozen source encoder + linear head on 20/class: at least 8 points above R3",
    "R4_source_val": "source model on its own val split: at least 85 % OA",
    "R5": "R1's model on ~half thick cloud: loses at least half its OA above chance",
}
"""The regime the simulated world must be in (issue text, docs/simulator.md)."""


def check_targets(r: dict[str, float]) -> dict[str, bool]:
    """Return whether each calibration target holds for the (mean) figures ``r``."""
    chance = r["chance"]
    return {
        "R1": 80.0 <= r["R1"] <= 92.0,
        "R2": 50.0 <= r["R2"] <= 70.0,
        "R3": r["R1"] - r["R3"] >= 25.0,
        "R4": r["R4"] - r["R3"] >= 8.0,
        "R4_source_val": r["R4_source_val"] >= 85.0,
        "R5": r["R1"] - r["R5"] >= 0.5 * (r["R1"] - chance),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="SEN12MS-layout target set")
    parser.add_argument("--source", type=Path, help="ImageFolder source set")
    parser.add_argument(
        "--epochs", type=int, default=25, help="epochs of the all-label runs (R1, R2)"
    )
    parser.add_argument(
        "--labelled-epochs", type=int, default=100, help="epochs of the 20-per-class run"
    )
    parser.add_argument(
        "--source-epochs", type=int, default=10, help="epochs of the source model (R4)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--train-seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="training seeds (initialisation, order, augmentation); figures are their mean",
    )
    parser.add_argument("--split-seed", type=int, default=0, help="split and cloud seed")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads (use 1 on a busy machine)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the R figures here")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="combine the training seeds of these --json records (same settings) instead",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device of the training loops (recorded figures: cpu; a GPU for exploring)",
    )
    parser.add_argument(
        "--figures",
        nargs="+",
        choices=FIGURES,
        default=list(FIGURES),
        help="compute only these figures (exploratory runs; targets are checked on all five)",
    )
    return parser.parse_args(argv)


@dataclass
class Loaded:
    """Every tensor set the calibration trains and scores on."""

    train: TileSet
    labelled: TileSet
    test: TileSet
    cloudy: TileSet
    source: dict[str, tuple[torch.Tensor, torch.Tensor]]
    classes: list[str]


def load_all(args: argparse.Namespace) -> Loaded:
    """Load and standardise the target subsets (clear and clouded) and the source set."""
    classes = read_classes(args.data)
    seed = args.split_seed
    clear = load_target(args.data, classes, CLEAR, ("train", "labelled", "test"), seed)
    cloudy = load_target(args.data, classes, THICK_HALF, ("test",), seed)["test"]
    train = clear["train"]
    stats = compute_standardisation([{"image_opt": train.opt, "image_sar": train.sar}])
    standardise_sets([train, clear["labelled"], clear["test"], cloudy], stats)
    source = load_source(args.source, seed)
    return Loaded(train, clear["labelled"], clear["test"], cloudy, source, classes)


@dataclass
class SeedRun:
    """The figures of one training seed, plus what the confusion tables need."""

    figures: dict[str, float]
    opt_pred: torch.Tensor
    sar_pred: torch.Tensor


def run_seed(
    data: Loaded, args: argparse.Namespace, seed: int, log: Callable[[str], None]
) -> SeedRun:
    """Train every calibration model with one training seed and score it."""
    n = len(data.classes)
    fit = dict(seed=seed, batch_size=args.batch_size, lr=args.lr, device=args.device)
    train, labelled, test, cloudy = data.train, data.labelled, data.test, data.cloudy
    figures: dict[str, float] = {}

    def add(key: str, oa: float) -> None:
        figures[key] = oa
        log(f"seed {seed} {key}: {oa:.1f} %")

    wanted = set(args.figures)
    opt_pred = sar_pred = torch.empty(0, dtype=torch.long)
    if wanted & {"R1", "R5"}:
        opt_model = train_model(train.opt, train.label, n, args.epochs, **fit)
        opt_pred = predict(opt_model, test.opt)
        add("R1", accuracy(opt_pred, test.label))
        add("R5", accuracy(predict(opt_model, cloudy.opt), cloudy.label))
    if "R2" in wanted:
        sar_model = train_model(train.sar, train.label, n, args.epochs, **fit)
        sar_pred = predict(sar_model, test.sar)
        add("R2", accuracy(sar_pred, test.label))
    if "R3" in wanted:
        small_model = train_model(labelled.opt, labelled.label, n, args.labelled_epochs, **fit)
        add("R3", accuracy(predict(small_model, test.opt), test.label))
    if "R4" in wanted:
        src_x, src_y = data.source["train"]
        src_model = train_model(src_x, src_y, int(src_y.max()) + 1, args.source_epochs, **fit)
        val_x, val_y = data.source["val"]
        add("R4_source_val", accuracy(predict(src_model, val_x), val_y))
        torch.manual_seed(seed)
        encoders = (("R4", src_model), ("R4_random_encoder", resnet18(num_classes=n)))
        for key, encoder in encoders:
            head = linear_probe(features(encoder, labelled.opt), labelled.label, n, seed)
            with torch.no_grad():
                pred = head(features(encoder, test.opt)).argmax(1)
            add(key, accuracy(pred, test.label))
    return SeedRun(figures, opt_pred, sar_pred)


ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("R1", "(1) optical RGB, all labels", "train, clear", "test, clear"),
    ("R2", "(2) SAR VV/VH/ratio, all labels", "train", "test"),
    ("R5", "(3) model (1) on thick cloud ~50 %", "train, clear", "test, clouded"),
    ("R3", "(4) optical RGB, 20 labels/class", "labelled, clear", "test, clear"),
    ("R4_source_val", "(5a) source model on source val", "source train", "source val"),
    ("R4", "(5) source encoder + linear head", "labelled, clear", "test, clear"),
    ("R4_random_encoder", "(5r) random encoder + linear head", "labelled, clear", "test, clear"),
)


SETTINGS: tuple[str, ...] = (
    "data", "source", "split_seed", "epochs", "labelled_epochs", "source_epochs",
    "batch_size", "lr", "threads", "device",
)  # fmt: skip
"""Arguments that must agree between runs whose training seeds are merged (``--merge``)."""


@dataclass
class Summary:
    """Mean, std and target checks of per-seed figures."""

    per_seed: dict[str, list[float]]
    train_seeds: list[int]
    chance: float
    mean: dict[str, float]
    std: dict[str, float]
    checks: dict[str, bool]


def summarise(per_seed: dict[str, list[float]], train_seeds: list[int], chance: float) -> Summary:
    """Average the figures over training seeds and check the targets (if all were computed)."""
    mean = {key: float(np.mean(v)) for key, v in per_seed.items()}
    std = {key: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for key, v in per_seed.items()}
    mean["chance"] = chance
    checks = check_targets(mean) if all(key in mean for key in TARGETS) else {}
    return Summary(per_seed, train_seeds, chance, mean, std, checks)


def print_figures(summary: Summary, figures: Sequence[str]) -> None:
    """Print one row per figure (mean, std, per seed) and the target verdicts."""
    print(f"{'':3s} {'setting':38s} {'train':16s} {'test':14s} {'OA %':>6s} {'std':>5s}  per seed")
    for key, name, train_on, test_on in ROWS:
        if key not in summary.mean:
            continue
        label = {"R4_source_val": "R4s", "R4_random_encoder": ""}.get(key, key)
        seeds = " ".join(f"{v:.1f}" for v in summary.per_seed[key])
        print(
            f"{label:3s} {name:38s} {train_on:16s} {test_on:14s} {summary.mean[key]:6.1f} "
            f"{summary.std[key]:5.1f}  {seeds}"
        )
    if summary.checks:
        print("\nTargets (on the mean over training seeds; R4s = R4_source_val):")
        for key, text in TARGETS.items():
            print(f"  {key:14s} {'met' if summary.checks[key] else 'NOT met':8s} {text}")
    else:
        print(f"\nTargets not checked: only {' '.join(figures)} computed")


def write_record(path: Path, summary: Summary, settings: dict[str, object]) -> None:
    """Write the R figures (mean), std, per-seed values, settings and verdicts as JSON."""
    record: dict[str, object] = {
        key: round(summary.mean[key], 2)
        for key in ("R1", "R2", "R3", "R4", "R4_source_val", "R5", "chance")
        if key in summary.mean
    }
    record.update(
        std={key: round(v, 2) for key, v in summary.std.items()},
        per_seed=summary.per_seed,
        train_seeds=summary.train_seeds,
        targets_met=summary.checks,
        settings=settings,
    )
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def merge(paths: Sequence[Path], out: Path | None) -> int:
    """Combine the training seeds of several ``--json`` records of one setting into one summary.

    Lets the seeds of one calibration run on different machines or days; the records must
    share every setting in ``SETTINGS`` and have no training seed in common.
    """
    records = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    first = records[0].get("settings")
    for path, record in zip(paths, records, strict=True):
        if record.get("settings") != first:
            raise SystemExit(f"{path}: settings differ from {paths[0]}; cannot merge")
    seeds = [seed for record in records for seed in record["train_seeds"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"training seeds repeat across the records: {seeds}")
    keys = [key for key in records[0]["per_seed"] if all(key in r["per_seed"] for r in records)]
    per_seed = {key: [v for r in records for v in r["per_seed"][key]] for key in keys}
    summary = summarise(per_seed, seeds, float(records[0]["chance"]))
    print(f"Calibration merged from {' '.join(map(str, paths))}")
    print(
        f"settings {json.dumps(first, sort_keys=True)}; training seeds {' '.join(map(str, seeds))}"
    )
    print_figures(summary, keys)
    if out is not None:
        write_record(out, summary, first)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the calibration for every training seed, print the table and check the targets."""
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json)
    if args.data is None or args.source is None:
        raise SystemExit("--data and --source are required (unless --merge)")
    torch.set_num_threads(args.threads)
    start = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - start:6.0f} s] {message}", file=sys.stderr, flush=True)

    data = load_all(args)
    n = len(data.classes)
    log(
        f"loaded target train {len(data.train.label)}, labelled {len(data.labelled.label)}, "
        f"test {len(data.test.label)}; source train {len(data.source['train'][1])}, "
        f"val {len(data.source['val'][1])}"
    )
    runs = [run_seed(data, args, seed, log) for seed in args.train_seeds]
    per_seed = {key: [run.figures[key] for run in runs] for key in runs[0].figures}
    summary = summarise(per_seed, list(args.train_seeds), 100.0 / n)
    counts = torch.bincount(data.test.label, minlength=n)
    majority = 100.0 * float(counts.max()) / len(data.test.label)
    cover = 100 * float(data.cloudy.cloud_fraction.mean())
    print(
        f"Calibration: data {args.data}, source {args.source}, split seed {args.split_seed}, "
        f"training seeds {' '.join(map(str, args.train_seeds))}, epochs "
        f"{args.epochs}/{args.labelled_epochs}/{args.source_epochs} (all/20-per-class/source), "
        f"ResNet-18 from scratch, Adam lr {args.lr}, batch {args.batch_size}"
    )
    print(
        f"target train {len(data.train.label)}, labelled {len(data.labelled.label)}, "
        f"test {len(data.test.label)} (clouded test: mean cloud cover {cover:.0f} %); "
        f"source train {len(data.source['train'][1])}, val {len(data.source['val'][1])}"
    )
    for name, value in (("uniform (1 / classes)", summary.chance), ("majority class", majority)):
        print(f"{'':3s} {'chance: ' + name:38s} {'-':16s} {'test':14s} {value:6.1f}")
    print_figures(summary, args.figures)
    for title, pred in (("(2) SAR", runs[0].sar_pred), ("(1) optical", runs[0].opt_pred)):
        if len(pred):
            matrix = confusion(pred, data.test.label, n)
            print_confusion(f"{title} confusion, first seed", matrix, data.classes)
    print(f"\ntotal time {time.time() - start:.0f} s")
    if args.json is not None:
        settings = {key: str(v) if isinstance(v, Path) else v for key, v in vars(args).items()}
        write_record(args.json, summary, {key: settings[key] for key in SETTINGS})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
