"""CycIT's degradation check: f_S's accuracy on clear test tiles degraded to known PSNR / SSIM.

CycIT classifies translated SAR tiles with f_S and scores the translations' PSNR / SSIM
against the clear twins (``test/metrics.json``). When its OA is low, either the translations
are too poor for f_S, or f_S is too brittle for any image that far from a clear tile. This
command tells the two apart: it degrades the *clear* optical test tiles (Gaussian blur, a
colour shift, noise: :mod:`cloudxfer.degradation`) to a ladder of PSNR / SSIM values, scored
as the translations are (:class:`~cloudxfer.image_quality.TranslationQuality`), and prints
f_S's OA at each level beside the CycIT run's own scores. If f_S still classifies tiles of
the translations' PSNR / SSIM well, the translations lose what f_S reads beyond what those
scores measure (translation too poor); if f_S fails at that quality too, the classifier is
brittle.

    python -m cloudxfer.reporting.degradation OUT/seed0/cycit

``OUT/seed0/cycit`` is a ``cycit`` run folder of ``cloudxfer run`` (its ``config.yaml`` names
the data and f_S's checkpoint, ``split.csv`` the test tiles, ``test/metrics.json`` the
translations' scores). The clear tiles are the test tiles' clear twins, else the test tiles
known to be clear (cloud fraction 0: a Hunan-style set's tiles its mask calls clear).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from cloudxfer.checkpoints import load_frozen_model
from cloudxfer.degradation import LADDER, Degradation, degrade, ladder
from cloudxfer.image_quality import TranslationQuality, to_reflectance

__all__ = ["LevelScore", "datamodule_from_config", "format_check", "main", "score_levels"]

CONFIG = "config.yaml"
"""The fit's configuration in a run folder (LightningCLI writes it)."""
SPLIT = "split.csv"
METRICS = Path("test") / "metrics.json"
F_S_STAGES = {"source_finetune"}


@dataclass(frozen=True)
class LevelScore:
    """f_S on one degradation level of the clear test tiles."""

    level: Degradation
    psnr: float
    """Mean PSNR (dB) of the degraded tiles against the clear ones (inf: unchanged)."""
    ssim: float
    oa: float
    """f_S's overall accuracy on the degraded tiles, 0-1."""
    aa: float
    """f_S's average (per-class) accuracy, 0-1."""
    n: int


def datamodule_from_config(data: dict[str, Any], **overrides: Any) -> Any:
    """Instantiate a run's datamodule from its config's ``data`` block, with ``overrides``.

    The block is what LightningCLI wrote (``class_path``, ``init_args``); jsonargparse builds
    it as the training command did (nested settings such as the standardisation included).
    """
    import lightning.pytorch as pl
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningDataModule, "data", required=True)
    init = {**dict(data.get("init_args") or {}), **overrides}
    config = parser.parse_object({"data": {"class_path": data["class_path"], "init_args": init}})
    # ``instantiate`` from jsonargparse 4.49 on; ``instantiate_classes`` before (deprecated since)
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return instantiate(config)["data"]


def _clear_tiles(batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Return the batch's clear optical tiles (standardised) and their labels."""
    from cloudxfer.stages.cyclegan import optical_reference

    reference, has = optical_reference(batch)
    return reference[has], batch["label"][has]


def score_levels(
    classifier: nn.Module,
    batches: Sequence[dict[str, Any]] | Any,
    levels: Sequence[Degradation],
    opt_mean: Sequence[float],
    opt_std: Sequence[float],
    num_classes: int,
    seed: int = 0,
) -> list[LevelScore]:
    """PSNR, SSIM and f_S's OA / AA at every level, over the clear tiles of ``batches``.

    Args:
        classifier: f_S (reads ``{"image_opt": standardised tiles}``), in eval mode.
        batches: Test batches (an iterable of sample dicts, e.g. a test loader).
        levels: The degradations, scored in this order.
        opt_mean: Optical standardisation mean (reflectance units).
        opt_std: Optical standardisation std.
        num_classes: Classes f_S predicts.
        seed: Seed of the noise (batch ``i`` draws with ``seed + i``).

    """
    mean, std = torch.tensor(list(opt_mean)), torch.tensor(list(opt_std))
    quality = [TranslationQuality(opt_mean, opt_std) for _ in levels]
    oa = [MulticlassAccuracy(num_classes, average="micro") for _ in levels]
    aa = [MulticlassAccuracy(num_classes, average="macro") for _ in levels]
    counts = [0] * len(levels)
    with torch.inference_mode():
        for index, batch in enumerate(batches):
            clear, labels = _clear_tiles(batch)
            if not len(clear):
                continue
            reflectance = to_reflectance(clear.float(), mean, std)
            for k, level in enumerate(levels):
                degraded = degrade(reflectance, level, seed + index)
                tiles = (degraded - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
                predictions = classifier({"image_opt": tiles}).argmax(dim=1)
                quality[k].update(tiles, clear, torch.ones(len(tiles), dtype=torch.bool))
                oa[k].update(predictions, labels)
                aa[k].update(predictions, labels)
                counts[k] += len(tiles)
    scores = []
    for k, level in enumerate(levels):
        if not counts[k]:
            raise ValueError("no clear test tile to degrade (no clear twin, no clear tile)")
        values = quality[k].compute()
        scores.append(
            LevelScore(
                level=level,
                psnr=values["psnr"],
                ssim=values["ssim"],
                oa=float(oa[k].compute()),
                aa=float(aa[k].compute()),
                n=counts[k],
            )
        )
    return scores


def _nearest(scores: Sequence[LevelScore], key: str, value: float) -> LevelScore | None:
    finite = [s for s in scores if math.isfinite(getattr(s, key))]
    if not finite or not math.isfinite(value):
        return None
    return min(finite, key=lambda s: abs(getattr(s, key) - value))


def format_check(scores: Sequence[LevelScore], cycit: dict[str, Any] | None) -> str:
    """Format the levels, the CycIT run's scores and f_S's OA at the nearest levels."""
    lines = [
        "| level | degradation | PSNR dB | SSIM | f_S OA % | f_S AA % | tiles |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, s in enumerate(scores):
        lines.append(
            f"| {k} | {s.level.describe()} | {s.psnr:.2f} | {s.ssim:.3f} | {100 * s.oa:.2f} | "
            f"{100 * s.aa:.2f} | {s.n} |"
        )
    if not cycit:
        lines.append("CycIT: no test/metrics.json in the run folder (test the run first)")
        return "\n".join(lines)
    psnr, ssim = cycit.get("psnr"), cycit.get("ssim")
    oa = cycit.get("oa")
    psnr_value = math.nan if psnr is None else float(psnr)
    ssim_value = math.nan if ssim is None else float(ssim)
    oa_text = "n/a" if oa is None else f"{100 * float(oa):.2f} %"
    lines.append(
        f"CycIT translations (test/metrics.json): PSNR {psnr_value:.3f} dB, SSIM "
        f"{ssim_value:.3f} ({int(cycit.get('n_translated') or 0)} tiles); CycIT OA {oa_text}"
    )
    for key, value, unit in (("ssim", ssim_value, ""), ("psnr", psnr_value, " dB")):
        near = _nearest(scores, key, value)
        if near is None:
            lines.append(f"f_S at the translations' {key.upper()}: n/a (no translation score)")
            continue
        lines.append(
            f"f_S at the translations' {key.upper()} (level {scores.index(near)}, "
            f"{key.upper()} {getattr(near, key):.3f}{unit}): OA {100 * near.oa:.2f} %"
        )
    lines.append(
        "Reading: f_S's OA well above CycIT's at the same quality: the translations lose what "
        "f_S reads beyond what PSNR / SSIM measure (translation too poor); f_S near CycIT's OA "
        "there: f_S fails at that quality anyway (classifier brittle)."
    )
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (is this a run folder of a fit?)")
    return cast(dict[str, Any], yaml.safe_load(path.read_text(encoding="utf-8")))


def run_check(
    run: Path,
    classifier: str | None = None,
    levels: Sequence[Degradation] = LADDER,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[list[LevelScore], dict[str, Any] | None]:
    """Score the levels on a CycIT run's clear test tiles with f_S; also its test metrics."""
    config = _read_yaml(run / CONFIG)
    model_args = (config.get("model") or {}).get("init_args") or {}
    path = classifier or model_args.get("classifier")
    if not path:
        raise ValueError(f"{run / CONFIG}: names no f_S checkpoint; pass --classifier")
    overrides: dict[str, Any] = {"clear_twins": True, "batch_size": batch_size, "num_workers": 0}
    if (run / SPLIT).is_file():
        overrides["split_file"] = str(run / SPLIT)
    datamodule = datamodule_from_config(config["data"], **overrides)
    datamodule.setup("test")
    f_s, _ = load_frozen_model(
        path, stages=F_S_STAGES, class_names=datamodule.class_names, modality="opt",
        methods=F_S_STAGES,
    )  # fmt: skip
    standardisation = datamodule.standardisation
    scores = score_levels(
        f_s, datamodule.test_dataloader(), levels, standardisation.opt_mean,
        standardisation.opt_std, len(datamodule.class_names), seed,
    )  # fmt: skip
    metrics_path = run / METRICS
    cycit = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return scores, cycit


def main(argv: Sequence[str] | None = None) -> int:
    """Print f_S's OA on clear test tiles at each degradation level beside CycIT's scores."""
    parser = argparse.ArgumentParser(
        prog="python -m cloudxfer.reporting.degradation",
        description="f_S's accuracy on clear test tiles degraded to known PSNR / SSIM, beside "
        "a CycIT run's translation scores",
    )
    parser.add_argument("run", type=Path, help="a cycit run folder (config.yaml, split.csv)")
    parser.add_argument("--classifier", help="f_S checkpoint (default: the run's classifier)")
    parser.add_argument("--blur", type=float, nargs="+", help="blur sigma per level (px)")
    parser.add_argument("--shift", type=float, nargs="+", help="colour shift per level")
    parser.add_argument("--noise", type=float, nargs="+", help="noise std per level")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="compute threads")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    args = parser.parse_args(argv)
    custom = [args.blur, args.shift, args.noise]
    if any(v is not None for v in custom) and not all(v is not None for v in custom):
        parser.error("--blur, --shift and --noise go together (one value per level each)")
    levels = LADDER if args.blur is None else ladder(args.blur, args.shift, args.noise)
    if args.threads is not None:
        from cloudxfer.runtime import configure_threads

        configure_threads(args.threads)
    try:
        scores, cycit = run_check(args.run, args.classifier, levels, args.batch_size, args.seed)
    except (OSError, ValueError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print(format_check(scores, cycit))
    if args.json is not None:
        record = {
            "run": str(args.run),
            "levels": [{**asdict(s), "level": asdict(s.level)} for s in scores],
            "cycit": cycit,
        }
        args.json.write_text(json.dumps(record, indent=2, allow_nan=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
