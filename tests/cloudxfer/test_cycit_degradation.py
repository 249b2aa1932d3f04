"""CycIT's degradation check: controlled degradations, and f_S's OA on them from a run folder."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torchmetrics.image import PeakSignalNoiseRatio

from cloudxfer.degradation import LADDER, Degradation, degrade, ladder
from cloudxfer.reporting.degradation import main
from cloudxfer.stages import SourceClassification
from datamodules import Sen12msCloudDataModule, Standardisation

STANDARDISATION = {
    "opt_mean": [0.2, 0.25, 0.3],
    "opt_std": [0.2, 0.2, 0.2],
    "sar_mean": [0.5, 0.2, 0.5],
    "sar_std": [0.2, 0.2, 0.2],
}


def _smooth_tiles(n: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 8, 8, generator=generator)
    return F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)


def test_each_level_of_the_ladder_degrades_the_tiles_more() -> None:
    clear = _smooth_tiles()
    assert torch.equal(degrade(clear, LADDER[0]), clear)
    psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
    scores = [float(psnr(degrade(clear, level), clear)) for level in LADDER[1:]]
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False))
    assert scores[0] > 30 and scores[-1] < 16  # from barely changed to far from the tile
    level = Degradation(blur=1.0, shift=0.1, noise=0.05)
    once, again = degrade(clear, level, seed=3), degrade(clear, level, seed=3)
    assert torch.equal(once, again) and not torch.equal(once, degrade(clear, level, seed=4))
    assert float(once.min()) >= 0.0 and float(once.max()) <= 1.0  # clipped as translations are
    red, green = (degrade(clear, Degradation(shift=0.1)) - clear).mean(dim=(0, 2, 3))[:2]
    assert float(red) > 0 > float(green)  # the colour shift's direction
    with pytest.raises(ValueError, match="one value per level"):
        ladder([1.0], [0.1, 0.2], [0.0])


def _tiny_f_s(datamodule: Sen12msCloudDataModule, path: Path) -> Path:
    """f_S trained a few steps on the labelled tiles' clear optical images, saved as a fit."""
    torch.manual_seed(0)
    stage = SourceClassification(
        mode="finetune", backbone="resnet10", init_from="unused",
        class_names=datamodule.class_names, normalisation=datamodule.normalisation,
    )  # fmt: skip
    optimiser = torch.optim.SGD(stage.model.parameters(), lr=0.05, momentum=0.9)
    stage.model.train()
    for _, batch in zip(range(4), datamodule.train_dataloader(), strict=False):
        loss = F.cross_entropy(stage.model({"image_opt": batch["image_opt"]}), batch["label"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.save({"state_dict": stage.state_dict(), "cloudxfer": stage.stage_metadata()}, path)
    return path


def test_the_check_scores_f_s_on_a_cycit_runs_clear_test_tiles(
    make_sen12ms: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = make_sen12ms(patches_per_class=16)
    data_args = {"root": str(dataset.root), "classes": dataset.classes,
                 "standardisation": STANDARDISATION, "store": False, "batch_size": 16,
                 "labelled_per_class": 6, "test_fraction": 0.3}  # fmt: skip
    datamodule = Sen12msCloudDataModule(
        **{**data_args, "standardisation": Standardisation.from_dict(STANDARDISATION)},
        train_subset="labelled",
    )
    f_s = _tiny_f_s(datamodule, tmp_path / "f_s.ckpt")
    run = tmp_path / "cycit"  # what a cycit run folder holds that the check reads
    (run / "test").mkdir(parents=True)
    config = {
        "data": {"class_path": "datamodules.Sen12msCloudDataModule", "init_args": data_args},
        "model": {"class_path": "cloudxfer.stages.CycleTranslationAdaptation",
                  "init_args": {"classifier": str(f_s)}},
    }  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    cycit = {"oa": 0.3, "psnr": 21.0, "ssim": 0.4, "n_translated": 15}
    (run / "test" / "metrics.json").write_text(json.dumps(cycit))
    levels = ["--blur", "0", "1", "3", "--shift", "0", "0.02", "0.1", "--noise", "0", "0.02", "0.1"]
    assert main([str(run), *levels, "--json", str(tmp_path / "check.json")]) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "check.json").read_text())
    scores = record["levels"]
    n_test = len(datamodule.subset_dataset("test"))
    assert [s["n"] for s in scores] == [n_test] * 3  # every test tile has its clear twin
    assert math.isinf(scores[0]["psnr"]) and scores[0]["ssim"] == pytest.approx(1.0)
    assert scores[1]["psnr"] > scores[2]["psnr"] and scores[1]["ssim"] > scores[2]["ssim"]
    assert all(0.0 <= s["oa"] <= 1.0 and 0.0 <= s["aa"] <= 1.0 for s in scores)
    assert record["cycit"] == cycit
    assert "CycIT translations (test/metrics.json): PSNR 21.000 dB, SSIM 0.400 (15 tiles)" in (
        printed
    )
    assert "f_S at the translations' SSIM (level" in printed and "classifier brittle" in printed
    # a folder without a fit's config is refused
    with pytest.raises(SystemExit, match="2"):
        main([str(tmp_path / "nowhere")])
    assert "config.yaml: not found" in capsys.readouterr().err
