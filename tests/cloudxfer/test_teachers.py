"""Frozen teachers' logits cached once per run: agreement with live teachers, cache files, fit.

The cache (``cloudxfer.teachers``) replaces every teacher forward pass of F1/F2 by a lookup by
tile id, so it must give the same targets, IRM weights and losses as running the teachers on the
batch, in either memory format; its files must be reused only for the same teacher checkpoints
and samples, and a damaged file must be recomputed, never used.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

import cloudxfer.stages.base as stage_base
from cloudxfer.irm import modality_weights
from cloudxfer.stages import AuxiliaryDistillation, SourceClassification
from cloudxfer.stages.base import StageModule
from cloudxfer.stages.target import TargetDistillation
from cloudxfer.teachers import (
    TeacherLogits,
    compute_teacher_logits,
    file_sha256,
    load_or_compute,
)
from datamodules import Sen12msCloudDataModule
from datamodules.clouds import CloudConfig

BACKBONE = "resnet10"
TOL = {"atol": 1e-5, "rtol": 1e-5}
LOSS_MODES = [("batch", "hard"), ("sample", "hard"), ("none", "soft")]
# The optimiser settings the CLI passes explicitly (see test_fit_with_default_optimiser_settings).
OPTIMISER = {
    "optimizer": "sgd",
    "lr": 1e-2,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "scheduler": "none",
}


# --- helpers --------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine, 2 OpenMP threads make convs ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _save(module: StageModule, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "cloudxfer": module.stage_metadata()}, path)
    return path


def write_teachers(out: Path, classes: list[str], seed: int = 1) -> dict[str, Path]:
    """Random-weight F1 opt/SAR auxiliaries and f_S checkpoints (one seed each)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for offset, modality in enumerate(("opt", "sar")):
        torch.manual_seed(seed + offset)
        aux = AuxiliaryDistillation(
            teacher="unused", modality=modality, backbone=BACKBONE, class_names=classes
        )
        files[modality] = _save(aux, out / f"aux_{modality}.ckpt")
    torch.manual_seed(seed + 2)
    source = SourceClassification(
        mode="finetune", backbone=BACKBONE, init_from="unused", class_names=classes
    )
    files["source"] = _save(source, out / "source_finetune.ckpt")
    return files


def make_datamodule(root: Path, classes: list[str], standardisation: Any, store_dir: Path):
    return Sen12msCloudDataModule(
        root=str(root),
        classes=classes,
        standardisation=standardisation,
        clouds=CloudConfig(cloudy_share=0.5, coverage=0.5, thin_share=0.5, seed=0),
        tile_size=32,
        labelled_per_class=2,
        store_dir=str(store_dir),
        batch_size=8,
    )


@pytest.fixture
def setting(make_sen12ms, identity_standardisation, tmp_path):
    """(datamodule, teacher checkpoint files) on 30 tiny patches (18 unlabelled tiles)."""
    fixture = make_sen12ms(patches_per_class=10, patch_size=32)
    dm = make_datamodule(
        fixture.root, fixture.classes, identity_standardisation, tmp_path / "store"
    )
    dm.setup("fit")
    files = write_teachers(tmp_path / "teachers", dm.class_names)
    return dm, files


def target_module(dm: Sen12msCloudDataModule, files: dict[str, Path], **kwargs: Any):
    return TargetDistillation(
        teacher_opt=str(files["opt"]),
        teacher_sar=str(files["sar"]),
        teacher_source=str(files["source"]),
        backbone=BACKBONE,
        class_names=dm.class_names,
        normalisation=dm.normalisation,
        **kwargs,
    )


def use_memory_format(module: StageModule, channels_last: bool) -> None:
    """What a fit does for the memory format: student (configure_model) and teachers."""
    module.channels_last = channels_last
    module.configure_model()
    for name, teacher in module._teachers.items():
        module._teachers[name] = teacher.to(memory_format=module.memory_format)


def train_batches(dm: Sen12msCloudDataModule, module: StageModule) -> list[dict[str, Any]]:
    batches = [module.on_after_batch_transfer(b, 0) for b in dm.train_dataloader()]
    assert len(batches) >= 2  # several batches, so rows are really looked up by id
    return batches


# --- cached vs live ---------------------------------------------------------------------------
@pytest.mark.parametrize("channels_last", [False, True])
def test_target_cached_logits_match_live_teachers(setting, channels_last: bool) -> None:
    dm, files = setting
    module = target_module(dm, files)
    module.setup("fit")
    assert set(module._teachers) == {"opt", "sar", "source"}
    use_memory_format(module, channels_last)
    module.eval()  # the student too: both calls of compute_loss see the same student output
    dataset = dm.subset_dataset("fit")  # what the train loader serves
    cache = compute_teacher_logits(module._teachers, dataset, channels_last=channels_last)
    assert cache.ids == [tile.id for tile in dataset.tiles]
    assert {name: tuple(v.shape) for name, v in cache.logits.items()} == {
        name: (len(dataset), len(dm.class_names)) for name in ("opt", "sar", "source")
    }
    # Three random teachers: their logits differ, so a mixed-up name would be caught.
    assert not torch.allclose(cache.logits["opt"], cache.logits["sar"])
    assert not torch.allclose(cache.logits["opt"], cache.logits["source"])

    seen: list[str] = []
    for batch in train_batches(dm, module):
        if channels_last:
            assert batch["image_opt"].is_contiguous(memory_format=torch.channels_last)
        seen.extend(batch["id"])
        with torch.no_grad():
            live = {name: t(batch) for name, t in module._teachers.items()}
        cached = cache.lookup(batch["id"], "cpu")
        assert set(cached) == set(live)
        for name in live:
            assert cached[name].dtype == torch.float32
            assert torch.equal(cached[name].argmax(1), live[name].argmax(1)), name
            torch.testing.assert_close(cached[name], live[name], **TOL)
        for per_sample in (False, True):
            for got, want in zip(
                modality_weights(cached["opt"], cached["sar"], per_sample),
                modality_weights(live["opt"], live["sar"], per_sample),
                strict=True,
            ):
                assert got.shape == ((len(batch["id"]),) if per_sample else ())
                torch.testing.assert_close(got, want, **TOL)

        for irm, targets in LOSS_MODES:
            module.hparams["irm"], module.hparams["targets"] = irm, targets
            with torch.no_grad():
                module._teacher_logits = cache
                loss_cached, logs_cached = module.compute_loss(batch)
                module._teacher_logits = None
                loss_live, logs_live = module.compute_loss(batch)
            assert torch.isfinite(loss_live) and float(loss_live) > 0
            torch.testing.assert_close(loss_cached, loss_live, **TOL)
            assert set(logs_cached) == set(logs_live)
            for key in logs_live:
                torch.testing.assert_close(logs_cached[key], logs_live[key], **TOL, msg=key)
    assert sorted(seen) == sorted(cache.ids)


@pytest.mark.parametrize("channels_last", [False, True])
def test_auxiliary_cached_logits_match_live_teacher(setting, channels_last: bool) -> None:
    dm, files = setting
    module = AuxiliaryDistillation(
        teacher=str(files["source"]),
        modality="sar",
        backbone=BACKBONE,
        class_names=dm.class_names,
        normalisation=dm.normalisation,
        filter_threshold=0.0,
    )
    module.setup("fit")
    assert list(module._teachers) == ["source"]
    use_memory_format(module, channels_last)
    module.eval()
    cache = compute_teacher_logits(
        module._teachers, dm.subset_dataset("fit"), channels_last=channels_last
    )
    for batch in train_batches(dm, module):
        module._teacher_logits = cache
        cached = module.teacher_outputs(batch)["source"]
        with torch.no_grad():
            loss_cached = module.training_step(batch, 0)
        module._teacher_logits = None
        live = module.teacher_outputs(batch)["source"]
        with torch.no_grad():
            loss_live = module.training_step(batch, 0)
            direct = module._teachers["source"](batch)
        assert not live.requires_grad
        torch.testing.assert_close(live, direct, atol=0, rtol=0)
        assert torch.equal(cached.argmax(1), live.argmax(1))
        torch.testing.assert_close(cached, live, **TOL)
        assert float(loss_live) > 0
        torch.testing.assert_close(loss_cached, loss_live, **TOL)


def test_lookup_follows_ids_and_rejects_unknown_ids() -> None:
    logits = torch.arange(12, dtype=torch.float64).reshape(4, 3)
    cache = TeacherLogits(["a", "b", "c", "d"], {"t": logits})
    assert cache.logits["t"].dtype == torch.float32
    got = cache.lookup(["c", "a", "c"], "cpu")["t"]
    torch.testing.assert_close(got, torch.tensor([[6.0, 7, 8], [0, 1, 2], [6, 7, 8]]))
    with pytest.raises(KeyError, match="'missing_tile'"):
        cache.lookup(["a", "missing_tile"], "cpu")


# --- load_or_compute --------------------------------------------------------------------------
class Compute:
    """A compute callable counting its calls; returns logits that depend on ``scale``."""

    def __init__(self, scale: float = 1.0) -> None:
        self.calls = 0
        self.scale = scale

    def __call__(self) -> TeacherLogits:
        self.calls += 1
        ids = [f"tile_{i}" for i in range(5)]
        values = torch.arange(15, dtype=torch.float32).reshape(5, 3) * self.scale
        return TeacherLogits(ids, {"opt": values, "sar": -values})


def assert_same(a: TeacherLogits, b: TeacherLogits) -> None:
    assert a.ids == b.ids
    assert set(a.logits) == set(b.logits)
    for name in a.logits:
        assert torch.equal(a.logits[name], b.logits[name]), name


@pytest.fixture
def teacher_files(tmp_path: Path) -> dict[str, Path]:
    files = {"opt": tmp_path / "opt.ckpt", "sar": tmp_path / "sar.ckpt"}
    files["opt"].write_bytes(b"optical teacher weights")
    files["sar"].write_bytes(b"sar teacher weights")
    return files


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_load_or_compute_reuses_the_saved_logits(tmp_path, teacher_files) -> None:
    cache_dir = tmp_path / "cache"
    compute = Compute()
    first = load_or_compute(cache_dir, teacher_files, "samples-1", compute)
    assert compute.calls == 1
    saved = list(cache_dir.glob("*.npz"))
    assert len(saved) == 1
    assert not [p for p in cache_dir.iterdir() if p not in saved]  # no temporary file left
    again = load_or_compute(cache_dir, teacher_files, "samples-1", compute)
    assert compute.calls == 1
    assert_same(again, first)
    assert again.lookup(["tile_3"], "cpu")["sar"].tolist() == [[-9.0, -10.0, -11.0]]


def test_load_or_compute_recomputes_for_other_teachers_or_samples(tmp_path, teacher_files):
    cache_dir = tmp_path / "cache"
    load_or_compute(cache_dir, teacher_files, "samples-1", Compute())

    other_samples = Compute(2.0)
    result = load_or_compute(cache_dir, teacher_files, "samples-2", other_samples)
    assert other_samples.calls == 1
    assert_same(result, Compute(2.0)())

    teacher_files["sar"].write_bytes(b"retrained sar teacher weights")
    retrained = Compute(3.0)
    result = load_or_compute(cache_dir, teacher_files, "samples-1", retrained)
    assert retrained.calls == 1
    assert_same(result, Compute(3.0)())
    assert len(list(cache_dir.glob("*.npz"))) == 3

    # The same teacher file under another teacher name is another key too.
    renamed = Compute(4.0)
    swapped = {"opt": teacher_files["sar"], "sar": teacher_files["opt"]}
    load_or_compute(cache_dir, swapped, "samples-1", renamed)
    assert renamed.calls == 1

    # ...while the unchanged combinations are still read back.
    for files, key, scale in ((teacher_files, "samples-1", 3.0), (swapped, "samples-1", 4.0)):
        reused = Compute(99.0)
        assert_same(load_or_compute(cache_dir, files, key, reused), Compute(scale)())
        assert reused.calls == 0


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bad_member_header(data: bytes) -> bytes:
    # The extra-field length of the first member's local header (bytes 28-29): its data
    # now seems to start past the end of the file.
    assert data[:4] == b"PK\x03\x04"
    corrupt = bytearray(data)
    corrupt[28:30] = b"\xff\xff"
    return bytes(corrupt)


def _flip_last_central_header(data: bytes) -> bytes:
    corrupt = bytearray(data)
    start = data.rfind(b"PK\x01\x02")
    corrupt[start + 6] ^= 0xFF  # "version needed to extract"
    return bytes(corrupt)


def _valid_npy(data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"\x00garbage bytes, not an npz archive" * 10,
        _truncate,
        lambda data: data[:40],
        lambda data: b"",
        _bad_member_header,
        _flip_last_central_header,
        _valid_npy,
    ],
    ids=[
        "garbage",
        "truncated_half",
        "truncated_header",
        "empty",
        "bad_member_header",
        "bad_central_header",
        "npy_not_npz",
    ],
)
def test_damaged_cache_file_is_recomputed(tmp_path, teacher_files, damage) -> None:
    cache_dir = tmp_path / "cache"
    load_or_compute(cache_dir, teacher_files, "samples", Compute())
    (path,) = cache_dir.glob("*.npz")
    path.write_bytes(damage(path.read_bytes()))
    compute = Compute(5.0)
    result = load_or_compute(cache_dir, teacher_files, "samples", compute)
    assert compute.calls == 1
    assert_same(result, Compute(5.0)())
    # The damaged file was replaced by the fresh result.
    reused = Compute(99.0)
    assert_same(load_or_compute(cache_dir, teacher_files, "samples", reused), Compute(5.0)())
    assert reused.calls == 0


def test_cache_file_of_another_key_is_not_used(tmp_path, teacher_files) -> None:
    cache_dir = tmp_path / "cache"
    load_or_compute(cache_dir, teacher_files, "samples-a", Compute(1.0))
    (path_a,) = cache_dir.glob("*.npz")
    load_or_compute(cache_dir, teacher_files, "samples-b", Compute(2.0))
    (path_b,) = [p for p in cache_dir.glob("*.npz") if p != path_a]
    os.replace(path_a, path_b)  # b's file name now holds a's logits (and a's full key)
    compute = Compute(7.0)
    assert_same(load_or_compute(cache_dir, teacher_files, "samples-b", compute), Compute(7.0)())
    assert compute.calls == 1


def test_cache_file_with_inconsistent_rows_is_not_used(tmp_path, teacher_files) -> None:
    cache_dir = tmp_path / "cache"
    load_or_compute(cache_dir, teacher_files, "samples", Compute())
    (path,) = cache_dir.glob("*.npz")
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["logits_sar"] = arrays["logits_sar"][:2]  # fewer rows than ids
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    assert zipfile.is_zipfile(path)
    compute = Compute(6.0)
    assert_same(load_or_compute(cache_dir, teacher_files, "samples", compute), Compute(6.0)())
    assert compute.calls == 1


def test_no_cache_dir_never_writes(tmp_path, teacher_files, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    compute = Compute()
    for _ in range(2):
        assert_same(load_or_compute(None, teacher_files, "samples", compute), Compute()())
    assert compute.calls == 2
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_unwritable_cache_dir_still_returns_the_result(tmp_path, teacher_files) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder's parent should be")
    cache_dir = blocker / "teacher_logits"  # mkdir fails even for root
    compute = Compute(2.0)
    for calls in (1, 2):
        assert_same(load_or_compute(cache_dir, teacher_files, "samples", compute), Compute(2.0)())
        assert compute.calls == calls
    assert blocker.read_text().startswith("a file")


# --- inside a Lightning fit -------------------------------------------------------------------
class RecordTeacherLogits(pl.Callback):
    """Records the module's cached logits when training starts (after ``on_fit_start``)."""

    def __init__(self) -> None:
        self.logits: list[TeacherLogits | None] = []
        self.losses: list[float] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.logits.append(pl_module._teacher_logits)

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def fit(
    module: StageModule, dm: pl.LightningDataModule, root: Path | None = None
) -> RecordTeacherLogits:
    root = root or dm.store_dir.parent / "run"  # where training.json goes
    record = RecordTeacherLogits()
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        default_root_dir=root,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[record],
    )
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2
    assert (root / "training.json").is_file()
    assert len(record.losses) == 2 and all(np.isfinite(record.losses))
    return record


def count_computes(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = stage_base.compute_teacher_logits

    def counted(*args: Any, **kwargs: Any) -> TeacherLogits:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stage_base, "compute_teacher_logits", counted)
    return calls


@pytest.mark.parametrize("channels_last", [False, True])
def test_fit_computes_the_cache_once_and_reuses_it(setting, monkeypatch, channels_last) -> None:
    dm, files = setting
    calls = count_computes(monkeypatch)
    module = target_module(dm, files, channels_last=channels_last, **OPTIMISER)
    record = fit(module, dm)
    (cached,) = record.logits
    assert cached is not None and module._teacher_logits is cached
    # The training tiles, then the tiles held out for validation: the stage's own tiles only.
    fit_ids = [tile.id for tile in dm.subset_dataset("fit").tiles]
    val_ids = [tile.id for tile in dm.subset_dataset("val").tiles]
    assert fit_ids and val_ids and not set(fit_ids) & set(val_ids)
    assert sorted(fit_ids + val_ids) == sorted(t.id for t in dm.subset_dataset("unlabelled").tiles)
    assert cached.ids == fit_ids + val_ids
    assert set(cached.logits) == {"opt", "sar", "source"}
    assert len(calls) == 2  # one pass over each subset
    saved = list((dm.store_dir / "teacher_logits").glob("*.npz"))
    assert len(saved) == 2

    # The cached rows are the teachers' outputs on the un-augmented training tiles.
    module._teacher_logits = None
    for teacher in module._teachers.values():
        assert not teacher.training
        assert all(not p.requires_grad for p in teacher.parameters())
    batch = module.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    live = module.teacher_outputs(batch)
    for name, value in cached.lookup(batch["id"], "cpu").items():
        torch.testing.assert_close(value, live[name], **TOL)

    # A second run with the same teachers and data reads the file instead of computing.
    again = fit(target_module(dm, files, channels_last=channels_last, **OPTIMISER), dm)
    assert len(calls) == 2
    (reread,) = again.logits
    assert reread is not None and reread is not cached
    assert_same(reread, cached)
    assert list((dm.store_dir / "teacher_logits").glob("*.npz")) == saved


def test_fit_without_teacher_cache_runs_teachers_live(setting, monkeypatch) -> None:
    dm, files = setting
    calls = count_computes(monkeypatch)
    module = target_module(dm, files, teacher_cache=False, **OPTIMISER)
    record = fit(module, dm)
    assert record.logits == [None]
    assert module._teacher_logits is None
    assert calls == [1]  # once over the training tiles, for the diagnostics only
    assert module.diagnostics["tiles"]["all"] == len(dm.subset_dataset("fit"))
    assert not (dm.store_dir / "teacher_logits").exists()


def test_fit_with_augmented_tiles_runs_teachers_live(setting, monkeypatch) -> None:
    dm, files = setting
    calls = count_computes(monkeypatch)
    setattr(dm, "augment", True)  # noqa: B010 - a datamodule flag the stages look for
    module = target_module(dm, files, **OPTIMISER)
    record = fit(module, dm)
    assert record.logits == [None]
    assert calls == [1]  # the diagnostics pass, on un-augmented tiles, never saved
    assert not (dm.store_dir / "teacher_logits").exists()


def test_fit_with_a_plain_datamodule_runs_teachers_live(setting, monkeypatch) -> None:
    """A datamodule without ``sample_key`` cannot key a cache: the teachers run live."""
    dm, files = setting
    calls = count_computes(monkeypatch)
    plain = pl.LightningDataModule.from_datasets(
        train_dataset=dm.subset_dataset("unlabelled"), batch_size=8
    )
    module = target_module(dm, files, **OPTIMISER)
    record = fit(module, plain, dm.store_dir.parent / "run")
    assert record.logits == [None]
    assert calls == []


def test_fit_with_default_optimiser_settings(setting) -> None:
    """A stage built in Python with the documented defaults (no optimiser arguments) trains."""
    dm, files = setting
    module = target_module(dm, files)
    fit(module, dm)
    assert module._teacher_logits is not None
    optimizer = module.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9
    assert optimizer.defaults["weight_decay"] == 5e-4


# --- checkpoints ----------------------------------------------------------------------------
def test_state_dict_keys_unchanged_by_channels_last_and_compile(setting) -> None:
    dm, files = setting
    torch.manual_seed(0)
    plain = target_module(dm, files)
    reference = plain.state_dict()
    assert any(key.startswith("model.") for key in reference)
    for channels_last, compile_model in ((True, False), (False, True), (True, True)):
        torch.manual_seed(0)
        module = target_module(dm, files, channels_last=channels_last, compile_model=compile_model)
        module.configure_model()  # torch.compile is lazy: nothing is compiled until called
        module.setup("fit")  # teachers stay out of the checkpoint
        state = module.state_dict()
        assert list(state) == list(reference)
        for key, value in reference.items():
            torch.testing.assert_close(state[key], value, atol=0, rtol=0, msg=key)
        assert ("model" in module._compiled) == compile_model
        if channels_last:
            weight = next(p for p in module.model.parameters() if p.ndim == 4)
            assert weight.is_contiguous(memory_format=torch.channels_last)
