"""CycIT: the CycleGAN's networks, sizes, losses, LR policy, checkpoints, references and plan."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from torchmetrics.image import PeakSignalNoiseRatio

from cloudxfer.checkpoints import CheckpointError
from cloudxfer.image_quality import TranslationQuality
from cloudxfer.lr_policy import cyclegan_lr_factor
from cloudxfer.models.cyclegan import CycleGAN, load_translator
from cloudxfer.models.patchgan import PatchDiscriminator, receptive_field
from cloudxfer.models.resnet_generator import ResnetGenerator
from cloudxfer.reporting.tables import collect, format_paper_table
from cloudxfer.runner.methods import TABLES
from cloudxfer.runner.plan import METRICS, RECORD_FILENAME, Setting, plan, profile_path
from cloudxfer.stages import CycleGanPretrain, CycleTranslationAdaptation
from cloudxfer.stages.cyclegan import Domains, optical_reference
from datamodules import Sen12msCloudDataModule, SourceScenesDataModule, Standardisation

CLASSES = ["a", "b"]
TILE = 64


def test_generators_keep_the_tile_and_the_patchgan_judges_patches() -> None:
    gan = CycleGAN(width=8, blocks=2, disc_width=8)
    sar = torch.randn(2, 3, TILE, TILE)
    assert gan({"image_sar": sar}).shape == (2, 3, TILE, TILE)
    assert gan.opt_to_sar(sar).shape == (2, 3, TILE, TILE)
    assert gan.d_opt(sar).shape == (2, 1, 6, 6)  # 70 px patches: each sees the whole tile
    assert PatchDiscriminator(4, layers=2)(torch.randn(1, 3, 32, 32)).shape == (1, 1, 6, 6)
    assert [receptive_field(n) for n in (1, 2, 3)] == [16, 34, 70]
    generators = {id(p) for p in gan.generator_parameters()}
    discriminators = {id(p) for p in gan.discriminator_parameters()}
    assert generators.isdisjoint(discriminators)
    assert len(generators) + len(discriminators) == len(list(gan.parameters()))
    with pytest.raises(ValueError, match="width"):
        PatchDiscriminator(0)
    with pytest.raises(ValueError, match="multiples of 4"):
        gan.sar_to_opt(torch.randn(1, 3, 30, 30))
    unet = CycleGAN("unet", width=8, disc_width=8)
    unet_parameters = sum(p.numel() for p in unet.sar_to_opt.parameters())
    assert unet.spec["generator"] == {"kind": "unet", "width": 8, "parameters": unet_parameters}
    assert unet({"image_sar": sar}).shape == (2, 3, TILE, TILE)


def test_the_standard_networks_have_cyclegans_sizes() -> None:
    """9 blocks at width 64: CycleGAN's 256 px generator (11.378 M), and its 70 x 70 judge."""
    generator = ResnetGenerator(width=64, blocks=9)
    parameters = sum(p.numel() for p in generator.parameters())
    assert f"{parameters / 1e6:.3f}" == "11.378"  # CycleGAN prints 11.378 M for G_A
    assert generator.spec == {"kind": "resnet", "width": 64, "blocks": 9, "parameters": parameters}
    with torch.no_grad():
        assert generator(torch.randn(1, 3, TILE, TILE)).shape == (1, 3, TILE, TILE)
    judge = PatchDiscriminator(width=64, layers=3)
    assert f"{judge.spec['parameters'] / 1e6:.3f}" == "2.765"  # CycleGAN's D_A
    assert judge.spec["receptive_field"] == 70
    six = ResnetGenerator(width=64, blocks=6).spec["parameters"]
    assert parameters - six == 3 * 2 * (256 * 256 * 9 + 256)  # three blocks of two 3x3 convs


def test_the_lr_policy_is_constant_then_linear_to_zero_at_the_budgets_end() -> None:
    factors = [cyclegan_lr_factor(e, 10) for e in range(11)]
    assert factors[:5] == [1.0] * 5  # the first half at the initial rate
    steps = [a - b for a, b in zip(factors[4:], factors[5:], strict=False)]
    assert all(step == pytest.approx(1 / 6) for step in steps)  # then linear ...
    assert factors[9] == pytest.approx(1 / 6) and factors[10] == 0.0  # ... to 0 at the end
    # 200 epochs: CycleGAN's 100 + 100 (its epoch 101 at 100/101, its last at 1/101)
    assert cyclegan_lr_factor(99, 200) == 1.0
    assert cyclegan_lr_factor(100, 200) == pytest.approx(100 / 101)
    assert cyclegan_lr_factor(199, 200) == pytest.approx(1 / 101)
    assert cyclegan_lr_factor(0, 1) == 1.0  # a one-epoch budget trains at the initial rate
    with pytest.raises(ValueError, match="budget"):
        cyclegan_lr_factor(0, 0)


def test_a_fit_follows_the_lr_policy_to_its_last_epoch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    stage = CycleGanPretrain(width=4, blocks=1, disc_width=4, disc_layers=1, lr=0.3,
                             class_names=CLASSES)  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(stage, train_dataloaders=DataLoader(_unpaired_batches(1, size=16), batch_size=1))
    record = json.loads((tmp_path / "training.json").read_text())
    lrs = [epoch["train"]["gan/lr"] for epoch in record["epochs"]]
    assert lrs == pytest.approx([0.3, 0.3, 0.15])  # 3 epochs: 2 constant, then 1/2 ...
    schedulers = cast(list[LRScheduler], stage.lr_schedulers())
    assert [s.get_last_lr() for s in schedulers] == [[0.0], [0.0]]  # ... and 0 at the end
    with pytest.raises(ValueError, match="'cyclegan' or 'none'"):
        CycleGanPretrain(scheduler="cosine", class_names=CLASSES)


def _save_stage(stage: pl.LightningModule, path: Path) -> Path:
    """A checkpoint as the training command leaves it: weights and stage metadata."""
    metadata = stage.stage_metadata()  # type: ignore[operator]
    torch.save({"state_dict": stage.state_dict(), "cloudxfer": metadata}, path)
    return path


def test_a_checkpoint_rebuilds_the_same_cyclegan(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sizes = {"width": 8, "blocks": 2, "disc_width": 8, "disc_layers": 2}
    pre = CycleGanPretrain(**sizes, class_names=CLASSES)
    spec = pre.stage_metadata()["model"]
    parameters = sum(p.numel() for p in pre.cyclegan.sar_to_opt.parameters())
    assert spec["generator"] == {
        "kind": "resnet",
        "width": 8,
        "blocks": 2,
        "parameters": parameters,
    }
    assert spec["discriminator"]["layers"] == 2 and spec["discriminator"]["receptive_field"] == 34
    sar = torch.randn(2, 3, 32, 32)
    for stage in (pre, CycleTranslationAdaptation(**sizes, backbone="resnet10",
                                                  class_names=CLASSES)):  # fmt: skip
        stage.cyclegan.load_state_dict(pre.cyclegan.state_dict())
        path = _save_stage(stage, tmp_path / f"{stage.stage_name}.ckpt")
        rebuilt, meta = load_translator(path)
        assert meta["stage"] == stage.stage_name and rebuilt.spec == pre.cyclegan.spec
        with torch.no_grad():
            torch.testing.assert_close(rebuilt.sar_to_opt(sar), pre.cyclegan.sar_to_opt(sar))
    old = {**pre.stage_metadata(), "model": {"kind": "cyclegan", "width": 16, "disc_width": 32}}
    torch.save({"state_dict": pre.state_dict(), "cloudxfer": old}, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="retrain"):
        load_translator(tmp_path / "old.ckpt")


def test_cycle_loss_is_zero_for_identity_generators_only() -> None:
    torch.manual_seed(0)
    stage = CycleGanPretrain(
        generator="unet", width=8, disc_width=8, disc_layers=1, class_names=CLASSES
    )
    sar, opt = torch.randn(3, 3, 16, 16), torch.randn(2, 3, 16, 16)
    # untrained U-Net generators are the identity (zero-initialised residual U-Nets)
    assert float(stage.cycle_loss(sar)) == pytest.approx(0.0, abs=1e-7)
    _, logs, _ = stage.generator_objective(Domains(sar, opt))
    assert float(logs["loss/cycle"]) == pytest.approx(0.0, abs=1e-7)
    nn.init.normal_(stage.cyclegan.sar_to_opt.out.weight, std=0.1)
    assert float(stage.cycle_loss(sar)) > 1e-3
    with pytest.raises(ValueError, match="source_stream"):
        stage.domains({"target": {"image_sar": sar}})
    # held out: translated SAR vs the tile's own optical, only where the tile is known clear
    fresh = CycleGanPretrain(
        generator="unet", width=8, disc_width=8, disc_layers=1, class_names=CLASSES
    )
    held = {"image_sar": sar, "image_opt": sar + torch.tensor([1.0, 5.0, 5.0]).view(3, 1, 1, 1),
            "cloud_fraction": torch.tensor([0.0, 0.4, math.nan])}  # fmt: skip
    loss, logs = fresh.compute_loss(held)
    assert float(loss) == pytest.approx(1.0) and float(logs["gan/paired_share"]) == pytest.approx(
        1 / 3
    )
    with pytest.raises(ValueError, match="adamw"):
        CycleGanPretrain(optimizer="sgd", class_names=CLASSES)


class _StepSpy(pl.Callback):
    """Record which parameters each optimiser's step changed."""

    def __init__(self) -> None:
        self.changed: list[tuple[int, set[str]]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for index, optimiser in enumerate(trainer.optimizers):
            original = optimiser.step

            def step(*args: Any, _index: int = index, _step: Any = original, **kw: Any) -> Any:
                before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
                out = _step(*args, **kw)
                after = dict(pl_module.named_parameters())
                changed = {n for n, p in before.items() if not torch.equal(p, after[n])}
                self.changed.append((_index, changed))
                return out

            optimiser.step = step  # type: ignore[method-assign]


def _unpaired_batches(n: int = 4, size: int = 32) -> list[dict[str, dict[str, Any]]]:
    generator = torch.Generator().manual_seed(1)
    return [
        {
            "target": {"image_sar": torch.randn(3, size, size, generator=generator), "id": f"t{i}"},
            "source": {"image_opt": torch.rand(3, size, size, generator=generator) + 1.0},
        }
        for i in range(n)
    ]


def test_a_training_step_moves_the_generators_then_the_discriminators(tmp_path: Path) -> None:
    torch.manual_seed(0)
    stage = CycleGanPretrain(width=8, blocks=1, disc_width=8, class_names=CLASSES, scheduler="none")
    start = {n: p.detach().clone() for n, p in stage.named_parameters()}
    spy = _StepSpy()
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[spy], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(stage, train_dataloaders=DataLoader(_unpaired_batches(), batch_size=2))
    generators = {n for n in start if ".sar_to_opt." in n or ".opt_to_sar." in n}
    discriminators = {n for n in start if ".d_opt." in n or ".d_sar." in n}
    assert generators and discriminators and generators | discriminators == set(start)
    (g_index, g_changed), (d_index, d_changed) = spy.changed  # one step each, in this order
    assert (g_index, d_index) == (0, 1)
    assert g_changed and g_changed <= generators  # the generator step left the judges alone
    assert d_changed and d_changed <= discriminators  # and the other way round
    record = json.loads((tmp_path / "training.json").read_text())
    train = record["epochs"][0]["train"]
    assert train["loss/discriminator"] > 0 and train["loss/adversarial"] > 0


def test_the_optical_reference_is_the_clear_twin_else_a_known_clear_tile() -> None:
    optical = torch.zeros(4, 3, 8, 8)
    twins = torch.full_like(optical, math.nan)
    twins[0] = 5.0
    batch = {
        "image_opt": optical,
        "image_opt_clear": twins,
        "clear_available": torch.tensor([True, False, False, False]),
        "cloud_fraction": torch.tensor([0.6, 0.0, 0.3, math.nan]),
    }
    reference, has = optical_reference(batch)
    assert has.tolist() == [True, True, False, False]  # twin; clear tile; clouded; unknown
    assert float(reference[0].mean()) == 5.0 and float(reference[1].mean()) == 0.0
    plain = {"image_opt": optical, "cloud_fraction": batch["cloud_fraction"]}
    assert optical_reference(plain)[1].tolist() == [False, True, False, False]


def _labelled_batch() -> dict[str, Any]:
    sar = torch.zeros(4, 3, 16, 16)
    optical = torch.full((4, 3, 16, 16), 2.0)
    return {
        "image_sar": sar,
        "image_opt": optical,
        "image_opt_clear": torch.where(torch.arange(4).view(4, 1, 1, 1) < 2, 1.0, math.nan)
        * torch.ones_like(optical),
        "clear_available": torch.tensor([True, True, False, False]),
        "cloud_fraction": torch.tensor([0.5, 0.0, 0.5, math.nan]),
        "label": torch.tensor([0, 1, 0, 1]),
        "id": ["t0", "t1", "t2", "t3"],
    }


def test_cycit_adapts_with_a_paired_l1_against_the_references() -> None:
    stage = CycleTranslationAdaptation(
        backbone="resnet10", generator="unet", width=8, disc_width=8, disc_layers=1,
        paired_weight=3.0, class_names=CLASSES,
    )  # fmt: skip
    batch = _labelled_batch()
    # identity (U-Net) generators translate SAR 0 to 0; the two references are 1: paired L1 is 1
    loss, logs = stage.compute_loss(batch)
    assert float(loss) == pytest.approx(1.0) and float(logs["gan/paired_share"]) == 0.5
    d = stage.domains(batch)
    assert d.paired is not None and d.paired.tolist() == [True, True, False, False]
    assert len(d.opt) == 2 and float(d.opt.mean()) == 1.0
    total, logs, fakes = stage.generator_objective(d)
    assert float(logs["loss/paired"]) == pytest.approx(1.0)
    unpaired = float(logs["loss/adversarial"]) + 10.0 * float(logs["loss/cycle"])
    assert float(total) == pytest.approx(unpaired + 3.0 * 1.0, rel=1e-5)
    assert fakes.opt.shape == (4, 3, 16, 16) and fakes.sar.shape == (2, 3, 16, 16)
    # no reference in a batch: the optical discriminator is left out, the step still has a graph
    none = {**batch, "clear_available": torch.zeros(4, dtype=torch.bool),
            "cloud_fraction": torch.full((4,), 0.5)}  # fmt: skip
    d = stage.domains(none)
    loss_d = stage.discriminator_objective(d, stage.generator_objective(d)[2])
    loss_d.backward()
    assert float(loss_d) == 0.0  # no real optical image, no optical fake for D_sar either
    assert all(not p.grad.any() for p in stage.cyclegan.d_opt.parameters())  # type: ignore[union-attr]
    assert stage.model(batch).shape == (4, len(CLASSES))  # f_S reads the translated SAR


def test_cycit_refuses_a_translator_of_another_size(tmp_path: Path) -> None:
    pre = CycleGanPretrain(width=8, blocks=1, disc_width=8, class_names=CLASSES)
    ckpt = _save_stage(pre, tmp_path / "pre.ckpt")
    assert pre.stage_metadata()["modality"] == "sar"
    stage = CycleTranslationAdaptation(
        translator_from=str(ckpt), classifier=str(ckpt), backbone="resnet10", width=8, blocks=1,
        disc_width=16, class_names=CLASSES,
    )  # fmt: skip
    with pytest.raises(ValueError, match="discriminator .* differs from this run's"):
        stage.setup("fit")


def test_translation_quality_scores_tiles_with_a_twin_only() -> None:
    torch.manual_seed(0)
    quality = TranslationQuality([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    clear = torch.rand(4, 3, 32, 32) * 0.5
    good = clear + 0.01 * torch.randn_like(clear)
    good[2:] = 1.0 - clear[2:]  # unscored tiles: a bad translation that must not count
    quality.update(good, clear, torch.tensor([True, True, False, False]))
    close = quality.compute()
    alone = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))(good[:2].clamp(0, 1), clear[:2])
    assert close["psnr"] == pytest.approx(float(alone), rel=1e-5)
    quality.reset()
    quality.update(clear.flip(-1), clear, torch.tensor([True, True, False, False]))
    far = quality.compute()
    assert close["n_translated"] == far["n_translated"] == 2
    assert close["psnr"] > far["psnr"] + 10 and close["ssim"] > far["ssim"]
    quality.reset()
    quality.update(good, torch.full_like(clear, math.nan), torch.zeros(4, dtype=torch.bool))
    values = quality.compute()
    assert values["n_translated"] == 0 and math.isnan(values["psnr"]) and math.isnan(values["ssim"])


def test_the_source_stream_serves_source_images_beside_the_target_tiles(
    sen12ms_dataset, image_folder_dataset
) -> None:
    standardisation = Standardisation([0.2, 0.3, 0.4], [0.5, 0.5, 0.5], [0.0] * 3, [1.0] * 3)
    common = {"root": str(sen12ms_dataset.root), "classes": sen12ms_dataset.classes,
              "standardisation": standardisation, "store": False, "batch_size": 4,
              "train_subset": "train"}  # fmt: skip
    plain = Sen12msCloudDataModule(**common)
    assert not isinstance(plain.train_dataloader(), CombinedLoader)
    assert "source_stream" not in plain.normalisation
    with pytest.raises(ValueError, match="source_stream"):
        plain.source_images()
    dm = Sen12msCloudDataModule(**common, source_stream=str(image_folder_dataset.root))
    loader = dm.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    batch, _, _ = next(iter(loader))
    assert set(batch) == {"target", "source"}
    assert batch["target"]["image_sar"].shape == (4, 3, TILE, TILE)
    assert batch["source"]["image_opt"].shape == (4, 3, TILE, TILE)  # resized to the tile
    # the source images standardised as the target's optical tiles
    reference = SourceScenesDataModule(
        root=str(image_folder_dataset.root), mean=[0.2, 0.3, 0.4], std=[0.5, 0.5, 0.5],
        image_size=TILE, val_fraction=0.0, augment=False, store=False,
    ).subset_dataset("train")  # fmt: skip
    served = dm.source_images().subset_dataset("train")
    assert len(served) == len(reference) == 30  # every image, none held out
    first = reference[0]["image_opt"]
    flips = [first, first.flip(-1), first.flip(-2), first.flip(-1).flip(-2)]
    assert any(torch.allclose(served[0]["image_opt"], f, atol=1e-6) for f in flips)
    assert dm.normalisation["source_stream"]["root"] == str(image_folder_dataset.root)


def test_cycit_runs_read_the_data_set_the_source_images_and_the_clear_twins(
    tmp_path: Path,
) -> None:
    hunan = Setting(profile_path("smoke"), "cloudy_pairs", run_root=lambda s: tmp_path / f"s{s}")
    runs = {run.method.name: run for run in plan(["cycit"], [0], hunan)}
    assert set(runs) == {"source_pretrain", "source_finetune", "cycit_pretrain", "cycit"}
    assert list(runs)[-1] == "cycit"
    for name in ("cycit_pretrain", "cycit"):  # both read the data set's target tiles
        assert f"--data={hunan.dataset}" in runs[name].fit_args
    # the streams they read beside it, and the adaptation's batches, are their cards' (the
    # training command sets them on the data module: tests/cloudxfer/test_profile.py)
    assert runs["cycit_pretrain"].method.card.streams == ["source"]
    assert runs["cycit"].method.card.streams == ["clear_twins"]
    assert runs["cycit"].method.card.data_args["batch_size"] == 8
    args = list(runs["cycit"].fit_args)
    assert f"--model.init_args.translator_from={runs['cycit_pretrain'].checkpoint}" in args
    assert f"--model.init_args.classifier={runs['source_finetune'].checkpoint}" in args


def _cycit_results(tmp_path: Path, psnr: list[float | None]) -> list[Path]:
    """Run records and test metrics of the CycIT row as the runner leaves them, one per seed."""
    setting = Setting(profile_path("smoke"), "sen12ms_cloud", run_root=lambda s: tmp_path / f"{s}")
    folders = []
    for run in plan(["cycit"], list(range(len(psnr))), setting):
        if run.method.name != "cycit":
            continue
        value = psnr[run.seed]
        metrics = {"oa": 0.25, "aa": 0.25, "kappa": 0.2, "n": 10, "n_cloudy": 4, "n_clear": 6,
                   "psnr": value, "ssim": None if value is None else 0.3,
                   "n_translated": 0 if value is None else 10}  # fmt: skip
        (run.directory / METRICS).parent.mkdir(parents=True)
        (run.directory / METRICS).write_text(json.dumps(metrics))
        (run.directory / RECORD_FILENAME).write_text(json.dumps(run.describe()))
        folders.append(run.directory)
    return folders


def test_tables_hold_the_cycit_row_and_its_translation_quality(tmp_path: Path) -> None:
    for name, published in (("table1", "30.59"), ("table2", "17.52"), ("table3", "21.44"),
                            ("table4", "19.50")):  # fmt: skip
        (row,) = [r for r in TABLES[name] if r.label == "CycIT"]
        assert (
            row.method == "cycit" and row.group == "SAR" and f"{row.published[0]:.2f}" == published
        )
    table = format_paper_table(
        collect(_cycit_results(tmp_path / "a", [12.0, 14.0])), TABLES["table1"]
    )
    (line,) = [x for x in table.splitlines() if x.startswith("| SAR | CycIT |")]
    assert "not run" not in line and "25.00 ± 0.00" in line and "30.59" in line
    assert "| CycIT (SAR) | 13.000 ± 1.414 | 0.300 ± 0.000 | n/a | n/a | 10 | 2 |" in table
    hunan = format_paper_table(collect(_cycit_results(tmp_path / "b", [None])), TABLES["table3"])
    assert "| CycIT (SAR) | n/a | n/a | n/a | n/a | 0 | 1 |" in hunan
