"""SPL: the U-Net, the easy-to-hard admission, source pairs, image quality and the plan."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cloudxfer.curriculum import (
    admission_threshold,
    admitted,
    admitted_share,
    pair_difficulty,
    texture_complexity,
)
from cloudxfer.image_quality import RestorationQuality
from cloudxfer.models.unet import CompactUNet
from cloudxfer.reporting.tables import collect, format_paper_table
from cloudxfer.runner.methods import TABLES
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME, Setting, plan, profile_path
from cloudxfer.stages import RestorationPretrain, SelfPacedRestoration
from datamodules import CloudConfig, SourceScenesDataModule

CLASSES = ["a", "b"]


def test_the_unet_keeps_the_shape_starts_as_the_identity_and_learns() -> None:
    torch.manual_seed(0)
    net = CompactUNet(width=8)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x), x)  # zero-initialised residual: clear ground passes through
    target = x + 0.5
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = float((net(x) - target).abs().mean().detach())
    for _ in range(5):
        optimiser.zero_grad()
        (net(x) - target).abs().mean().backward()
        optimiser.step()
    after = net(x).detach()
    assert after.shape == x.shape and float((after - target).abs().mean()) < before
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match="width"):
        CompactUNet(width=6)


def test_difficulty_is_texture_under_cloud_cover() -> None:
    flat = torch.zeros(1, 3, 8, 8)
    stripes = torch.zeros(1, 3, 8, 8)
    stripes[..., ::2] = 1.0  # every horizontal step changes by 1, vertical steps by 0
    assert float(texture_complexity(flat)) == 0.0
    assert float(texture_complexity(stripes)) == pytest.approx(0.5)
    clear = torch.cat([stripes, stripes, flat])
    cover = torch.tensor([0.2, 0.8, 0.9])
    assert pair_difficulty(clear, cover).tolist() == pytest.approx([0.1, 0.4, 0.0])
    # unknown cover counts as fully clouded (hardest), never as clear
    assert float(pair_difficulty(stripes, torch.tensor([math.nan]))) == pytest.approx(0.5)


def test_the_admitted_share_grows_to_every_pair_and_admits_the_easiest() -> None:
    assert [admitted_share(e, 0.5, 4) for e in range(6)] == [0.5, 0.625, 0.75, 0.875, 1.0, 1.0]
    assert admitted_share(0, 0.3, 0) == 1.0  # no pace: every pair from the start
    with pytest.raises(ValueError, match="start_share"):
        admitted_share(0, 0.0, 5)
    pool = torch.tensor([0.4, 0.1, 0.3, 0.2])
    assert admission_threshold(pool, 0.5) == pytest.approx(0.2)  # the two easiest
    assert admitted(pool, admission_threshold(pool, 0.5)).tolist() == [False, True, False, True]
    assert admission_threshold(pool, 0.01) == pytest.approx(0.1)  # at least one pair
    assert admission_threshold(pool, 1.0) == pytest.approx(0.4)
    assert admission_threshold(torch.zeros(0), 0.5) == math.inf


def _pairs_batch() -> dict[str, object]:
    """Four tiles: three pairs of rising difficulty and one without a clear twin."""
    clear = torch.zeros(4, 3, 16, 16)
    clear[1, ..., ::2] = 1.0
    clear[2, ..., ::2] = 2.0
    cloudy = clear + 1.0
    return {
        "image_opt": cloudy,
        "image_opt_clear": torch.where(torch.arange(4).view(4, 1, 1, 1) == 3, math.nan, clear),
        "clear_available": torch.tensor([True, True, True, False]),
        "cloud_fraction": torch.tensor([0.5, 0.5, 0.5, 0.5]),
        "label": torch.tensor([0, 1, 0, 1]),
        "id": ["t0", "t1", "t2", "t3"],
    }


def test_spl_trains_on_the_admitted_pairs_and_holds_out_on_every_pair() -> None:
    stage = SelfPacedRestoration(
        backbone="resnet10", class_names=CLASSES, start_share=0.5, pace_epochs=2
    )
    batch = _pairs_batch()
    stage.train()  # no trainer: epoch 0, half of the batch's pairs (the two easiest)
    loss, logs = stage.compute_loss(batch)
    # the untrained restorer returns its input: every pair's L1 is exactly 1
    assert float(loss.detach()) == pytest.approx(1.0)
    assert float(logs["spl/admitted"]) == pytest.approx(2 / 4)
    assert float(logs["spl/pairs"]) == pytest.approx(3 / 4)
    stage._difficulties = torch.tensor([0.0, 9.0, 9.0, 9.0])  # fit pool: these are all easy
    _, logs = stage.compute_loss(batch)
    assert float(logs["spl/admitted"]) == pytest.approx(3 / 4)  # the tile without twin: never
    stage.eval()
    _, logs = stage.compute_loss(batch)
    assert float(logs["spl/admitted"]) == pytest.approx(3 / 4)
    assert float(logs["spl/admitted_share"]) == 1.0
    with pytest.raises(ValueError, match="clear twins"):
        stage.compute_loss({k: v for k, v in batch.items() if k != "clear_available"})


def test_spl_refuses_a_restorer_of_another_width(tmp_path: Path) -> None:
    pre = RestorationPretrain(width=8, class_names=CLASSES)
    ckpt = tmp_path / "pre.ckpt"
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in pre.model.state_dict().items()},
         "cloudxfer": pre.stage_metadata()},
        ckpt,
    )  # fmt: skip
    stage = SelfPacedRestoration(
        restorer_from=str(ckpt), classifier=str(ckpt), backbone="resnet10", width=16,
        class_names=CLASSES,
    )  # fmt: skip
    with pytest.raises(ValueError, match="width 8 differs"):
        stage.setup("fit")


def test_image_quality_scores_restored_and_input_on_clouded_twins_only() -> None:
    torch.manual_seed(0)
    quality = RestorationQuality([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    clear = torch.rand(4, 3, 32, 32) * 0.5
    cloudy = (clear + 0.4).clamp(0, 1)
    restored = clear + 0.02 * torch.randn_like(clear)
    quality.update(restored, cloudy, clear, torch.tensor([True, True, False, False]))
    values = quality.compute()
    assert values["n_restored"] == 2
    assert values["psnr"] > values["psnr_input"] + 10 and values["ssim"] > values["ssim_input"]
    quality.reset()
    quality.update(restored, cloudy, torch.full_like(clear, math.nan), torch.zeros(4, dtype=bool))
    values = quality.compute()
    assert values["n_restored"] == 0 and math.isnan(values["psnr"]) and math.isnan(values["ssim"])


def test_source_images_come_with_a_pasted_cloud_copy(image_folder_dataset) -> None:
    common = {"root": str(image_folder_dataset.root), "mean": [0.5] * 3, "std": [0.25] * 3,
              "image_size": 32, "store": False, "augment": False}  # fmt: skip
    plain = SourceScenesDataModule(**common).subset_dataset("train")
    clouds = CloudConfig(cloudy_share=0.5, seed=3)
    paired = SourceScenesDataModule(**common, clouds=clouds)
    dataset = paired.subset_dataset("train")
    fractions = []
    for index in range(len(dataset)):
        sample = dataset[index]
        assert torch.allclose(sample["image_opt"], plain[index]["image_opt"])  # clear: as f_S's
        fraction = float(sample["cloud_fraction"])
        fractions.append(fraction)
        same = torch.equal(sample["image_opt_cloudy"], sample["image_opt"])
        assert same == (fraction == 0.0)
        assert torch.equal(sample["image_opt_cloudy"], dataset[index]["image_opt_cloudy"])
    assert 0 < sum(f > 0 for f in fractions) < len(fractions)
    assert paired.normalisation["clouds"]["seed"] == 3
    assert (
        "image_opt_cloudy" not in plain[0]
        and "clouds" not in SourceScenesDataModule(**common).normalisation
    )


def test_spl_runs_read_source_data_for_the_restorer_and_clear_twins_for_the_row(
    tmp_path: Path,
) -> None:
    hunan = Setting(profile_path("smoke"), "cloudy_pairs", run_root=lambda s: tmp_path / f"s{s}")
    runs = {run.method.name: run for run in plan(["spl"], [0], hunan)}
    assert set(runs) == {"source_pretrain", "source_finetune", "spl_pretrain", "spl"}
    assert list(runs)[-1] == "spl"  # upstream first
    for upstream in ("source_pretrain", "spl_pretrain"):  # the source domain, never the target
        assert not any(a.startswith("--data=") for a in runs[upstream].fit_args)
    args = list(runs["spl"].fit_args)
    assert f"--data={hunan.dataset}" in args
    # the clear twins: a stream its card declares (the training command switches it on)
    assert runs["spl"].method.card.streams == ["clear_twins"]
    assert f"--model.init_args.restorer_from={runs['spl_pretrain'].checkpoint}" in args
    assert f"--model.init_args.classifier={runs['source_finetune'].checkpoint}" in args


def _spl_results(tmp_path: Path, psnr: list[float | None]) -> list[Path]:
    """Run records and test metrics of the SPL row as the runner leaves them, one per seed."""
    setting = Setting(profile_path("smoke"), "sen12ms_cloud", run_root=lambda s: tmp_path / f"{s}")
    folders = []
    for run in plan(["spl"], list(range(len(psnr))), setting):
        if run.method.name != "spl":
            continue
        value = psnr[run.seed]
        metrics = {"oa": 0.5, "aa": 0.5, "kappa": 0.4, "n": 10, "n_cloudy": 4, "n_clear": 6,
                   "psnr": value, "ssim": None if value is None else 0.8, "psnr_input": None,
                   "ssim_input": None, "n_restored": 0 if value is None else 4}  # fmt: skip
        (run.directory / METRICS).parent.mkdir(parents=True)
        (run.directory / METRICS).write_text(json.dumps(metrics))
        (run.directory / RECORD_FILENAME).write_text(json.dumps(run.describe()))
        folders.append(run.directory)
    return folders


def test_tables_hold_the_spl_row_and_its_image_quality_or_n_a(tmp_path: Path) -> None:
    rows = collect(_spl_results(tmp_path / "a", [25.0, 27.0]))
    table = format_paper_table(rows, TABLES["table1"])
    (spl,) = [line for line in table.splitlines() if line.startswith("| Opt | SPL |")]
    assert "not run" not in spl and "50.00 ± 0.00" in spl and "42.54" in spl  # ours, paper's
    assert "| SPL (opt) | 26.000 ± 1.414 | 0.800 ± 0.000 | n/a | n/a | 4 | 2 |" in table
    hunan = format_paper_table(collect(_spl_results(tmp_path / "b", [None])), TABLES["table3"])
    assert "| SPL (opt) | n/a | n/a | n/a | n/a | 0 | 1 |" in hunan
    others = [r for r in rows if r.method != "spl"]
    assert "Restoration" not in format_paper_table(others, TABLES["table1"])


@pytest.mark.slow
def test_spl_runs_through_the_runner_on_the_hunan_style_set(tmp_path: Path) -> None:
    from cloudxfer.runner.cli import main as run_main

    args = ["--dataset", "cloudy_pairs", "--methods", "spl", "--profile", "smoke", "--synth"]
    assert run_main([*args, "--pairs", "300", "--per-class", "4", "--out", str(tmp_path)]) == 0
    runs = tmp_path / "seed0"
    metrics = json.loads((runs / "spl" / METRICS).read_text())
    assert 0.0 <= metrics["oa"] <= 1.0 and metrics["n_restored"] == 0  # no clear twins: n/a
    assert all(metrics[key] is None for key in ("psnr", "ssim", "psnr_input", "ssim_input"))
    assert (runs / "spl" / "test" / "restoration_examples.png").is_file()
    (epoch,) = json.loads((runs / "spl" / "training.json").read_text())["epochs"]
    assert epoch["train"]["spl/pairs"] == 0.0
    # nothing to adapt on: the restorer is still the one pre-trained on the source images
    pre = torch.load(runs / "spl_pretrain" / "checkpoints" / "best.ckpt", weights_only=False)
    mine = torch.load(runs / "spl" / "checkpoints" / "best.ckpt", weights_only=False)
    weights = {k.removeprefix("model.restorer."): v for k, v in mine["state_dict"].items()
               if k.startswith("model.restorer.")}  # fmt: skip
    assert weights and all(
        torch.equal(v, pre["state_dict"][f"model.{k}"]) for k, v in weights.items()
    )
    source = json.loads((runs / "spl_pretrain" / "normalisation.json").read_text())
    assert source["dataset"] == "source_scenes" and source["clouds"]["cloudy_share"] == 0.5
    assert (
        json.loads((runs / "source_pretrain" / "normalisation.json").read_text())["dataset"]
        == "source_scenes"
    )  # the source model, too, reads the source domain, not the target
    assert "| SPL (opt) | n/a | n/a | n/a | n/a | 0 | 1 |" in (tmp_path / "table.md").read_text()
