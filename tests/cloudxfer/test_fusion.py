"""TLF's stage: labels only on labelled samples, f_S's pseudo-labels on the others."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cloudxfer.models.classifiers import LateFusionClassifier, build_model
from cloudxfer.stages import LateFusionDistillation, OgmGeFusion
from cloudxfer.stages.ogm_ge import modulation_coefficients
from tests.gloo import free_port, gloo_group

CLASSES = ["a", "b", "c"]


def _stage(teacher_logits: torch.Tensor) -> LateFusionDistillation:
    stage = LateFusionDistillation(teacher="unused.ckpt", backbone="resnet10", class_names=CLASSES)
    stage.teacher_outputs = lambda batch: {"source": teacher_logits}  # type: ignore[method-assign]
    return stage


def _batch(labels: list[int]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image_opt": torch.randn(4, 3, 64, 64, generator=g),
        "image_sar": torch.randn(4, 3, 64, 64, generator=g),
        "label": torch.tensor(labels),
        "labelled": torch.tensor([True, True, False, False]),
    }


def test_labels_of_unlabelled_tiles_and_pseudo_labels_of_labelled_ones_are_never_used() -> None:
    teacher = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    torch.manual_seed(0)
    stage = _stage(teacher).eval()  # eval: batch-norm does not depend on the batch's order
    loss, logs = stage.compute_loss(_batch([0, 1, 2, 2]))
    other_labels, _ = stage.compute_loss(_batch([0, 1, 0, 1]))  # unlabelled tiles' labels
    assert other_labels.item() == pytest.approx(loss.item())
    changed = teacher.clone()
    changed[:2] = torch.tensor([[0, 0, 5.0], [0, 0, 5.0]])  # labelled tiles' pseudo-labels
    stage.teacher_outputs = lambda batch: {"source": changed}  # type: ignore[method-assign]
    assert stage.compute_loss(_batch([0, 1, 2, 2]))[0].item() == pytest.approx(loss.item())
    logits = stage(_batch([0, 1, 2, 2]))
    ce = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([0, 1]))
    kd = torch.nn.functional.cross_entropy(logits[2:], torch.tensor([2, 0]))
    assert loss.item() == pytest.approx((ce + kd).item(), rel=1e-5)
    assert logs["train/labelled_share"].item() == 0.5
    assert set(stage.model.encoders) == {"image_opt", "image_sar"}  # one encoder per modality


@pytest.mark.parametrize(("backbone", "width"), [("resnet10", 512), ("googlenet", 1024)])
def test_tlf_fusion_shapes_and_per_modality_parts(backbone: str, width: int) -> None:
    torch.manual_seed(0)
    net = LateFusionClassifier(backbone, ["image_opt", "image_sar"], num_classes=3).eval()
    batch = {k: v for k, v in _batch([0, 1, 2, 2]).items() if k.startswith("image_")}
    assert net.widths == {"image_opt": width, "image_sar": width}
    assert net.head.in_features == 2 * width  # pooled features concatenated, one head
    with torch.no_grad():
        features = net.features(batch)
        logits, parts = net.forward_parts(batch)
        assert features.shape == (4, 2 * width) and logits.shape == (4, 3)
        assert torch.allclose(net(batch), logits, atol=1e-5)
        assert set(parts) == {"image_opt", "image_sar"}
        assert all(part.shape == (4, 3) for part in parts.values())
        assert torch.allclose(parts["image_opt"] + parts["image_sar"], logits, atol=1e-5)
        # each encoder reads its own modality: a new SAR tile moves the SAR features alone (a
        # fresh GoogLeNet's features are ~1e-11 in eval mode, hence exact comparisons)
        changed = {**batch, "image_sar": torch.randn(4, 3, 64, 64)}
        _, moved = net.forward_parts(changed)
        assert torch.equal(moved["image_opt"], parts["image_opt"])
        moved_features = net.features(changed)
        assert torch.equal(moved_features[:, :width], features[:, :width])
        assert not torch.equal(moved_features[:, width:], features[:, width:])
        # the two encoders share no parameters, and the spec rebuilds the same network
        opt, sar = (set(map(id, net.encoders[k].parameters())) for k in net.inputs)
        assert not opt & sar
        rebuilt = build_model(net.spec).eval()
        rebuilt.load_state_dict(net.state_dict())
        assert torch.allclose(rebuilt(batch), logits, atol=1e-5)


def test_ogm_ge_coefficient_by_hand() -> None:
    k = modulation_coefficients({"image_opt": 3.0, "image_sar": 1.0}, alpha=0.5)
    assert k["image_sar"] == 1.0
    assert k["image_opt"] == pytest.approx(1.0 - math.tanh(0.5 * 3.0))  # 0.0949
    assert modulation_coefficients({"image_opt": 1.0, "image_sar": 4.0}, 0.1) == pytest.approx(
        {"image_opt": 1.0, "image_sar": 1.0 - math.tanh(0.4)}
    )
    assert modulation_coefficients({"image_opt": 2.0, "image_sar": 2.0}, 0.8) == {
        "image_opt": 1.0,
        "image_sar": 1.0,
    }


@pytest.mark.parametrize("enhance", [False, True])
def test_ogm_ge_touches_only_the_dominant_encoders_conv_gradients(enhance: bool) -> None:
    teacher = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    torch.manual_seed(0)
    stage = OgmGeFusion(
        teacher="unused.ckpt", backbone="resnet10", class_names=CLASSES, alpha=0.5,
        gaussian_enhancement=enhance,
    )  # fmt: skip
    stage.teacher_outputs = lambda batch: {"source": teacher}  # type: ignore[method-assign]
    stage._trainer = SimpleNamespace(  # type: ignore[assignment]
        strategy=SimpleNamespace(reduce=lambda value, reduce_op: value),
        current_epoch=0,
        global_step=0,
    )
    logged: dict[str, float] = {}
    stage.log_dict = lambda values, **_: logged.update(values)  # type: ignore[method-assign]
    loss, _ = stage.compute_loss(_batch([0, 1, 2, 2]))
    loss.backward()
    before = {n: p.grad.clone() for n, p in stage.named_parameters() if p.grad is not None}
    scores = {key: float(v) for key, v in stage._scores.items()}
    dominant = max(scores, key=scores.__getitem__)
    k = modulation_coefficients(scores, 0.5)[dominant]
    stage.on_before_optimizer_step(torch.optim.SGD(stage.parameters(), lr=0.1))
    assert logged[f"ogm/k_{dominant.removeprefix('image_')}"] == pytest.approx(k)
    changed = {
        n
        for n, p in stage.named_parameters()
        if p.grad is not None and not torch.equal(p.grad, before[n])
    }
    prefix = f"model.encoders.{dominant}."
    assert changed and all(n.startswith(prefix) for n in changed)  # only the dominant encoder
    for name in changed:
        grad = dict(stage.named_parameters())[name].grad
        assert grad is not None and grad.dim() == 4  # conv weights only
        if not enhance:
            assert torch.allclose(grad, before[name] * k)


def test_ogm_ge_noise_is_the_same_on_every_process() -> None:
    """GE's noise follows the run's seed and the step, not a process's own random state."""
    teacher = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    grads = []
    for draws in (0, 3):  # two "processes" whose global random streams have diverged
        torch.manual_seed(0)
        stage = OgmGeFusion(
            teacher="unused.ckpt", backbone="resnet10", class_names=CLASSES, alpha=0.5
        )
        stage.teacher_outputs = lambda batch: {"source": teacher}  # type: ignore[method-assign]
        stage._trainer = SimpleNamespace(  # type: ignore[assignment]
            strategy=SimpleNamespace(reduce=lambda value, reduce_op: value),
            current_epoch=0,
            global_step=7,
        )
        stage.log_dict = lambda values, **_: None  # type: ignore[method-assign]
        loss, _ = stage.compute_loss(_batch([0, 1, 2, 2]))
        loss.backward()
        torch.rand(draws)
        stage.on_before_optimizer_step(torch.optim.SGD(stage.parameters(), lr=0.1))
        grads.append({n: p.grad.clone() for n, p in stage.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


_GLOBAL_LABELLED = torch.tensor([True, True, False, False, True, True, False, False])


def _ogm_ge_step(
    shard: slice, reduce: Any, average_gradients: Callable[[torch.Tensor], None]
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """One OGM-GE step on ``shard`` of an 8-tile batch: the coefficients and the gradients.

    The network and batch are made from seed 0 in every process; eval mode, so batch-norm
    reads no batch statistics and a tile's logits do not depend on the rest of its shard.
    """
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    batch = {
        "image_opt": torch.randn(8, 3, 64, 64, generator=g) * 2,
        "image_sar": torch.randn(8, 3, 64, 64, generator=g),
        "label": torch.randint(0, 3, (8,), generator=g),
        "labelled": _GLOBAL_LABELLED,
    }
    teacher = torch.randn(8, 3, generator=g) * 4
    stage = OgmGeFusion(teacher="unused.ckpt", backbone="resnet10", class_names=CLASSES,
                        alpha=0.5).eval()  # fmt: skip
    stage.teacher_outputs = lambda b: {"source": teacher[shard]}  # type: ignore[method-assign]
    stage._trainer = SimpleNamespace(  # type: ignore[assignment]
        strategy=SimpleNamespace(reduce=reduce), current_epoch=0, global_step=3
    )
    logged: dict[str, float] = {}
    stage.log_dict = lambda values, **_: logged.update(values)  # type: ignore[method-assign]
    loss, _ = stage.compute_loss({k: v[shard] for k, v in batch.items()})
    loss.backward()
    for p in stage.parameters():
        if p.grad is not None:
            average_gradients(p.grad)  # what DDP's backward does before the optimizer step
    stage.on_before_optimizer_step(torch.optim.SGD(stage.parameters(), lr=0.1))
    grads = {n: p.grad for n, p in stage.named_parameters() if p.grad is not None}
    return logged, grads


def _ogm_ge_worker(rank: int, world: int, port: int, out: str) -> None:
    from lightning.pytorch.strategies import DDPStrategy

    def average(grad: torch.Tensor) -> None:
        dist.all_reduce(grad)
        grad /= world

    with gloo_group(rank, world, port):
        torch.set_num_threads(1)
        strategy = DDPStrategy()  # Lightning's own reduce over the process group
        shard = slice(4 * rank, 4 * rank + 4)
        logged, grads = _ogm_ge_step(shard, strategy.reduce, average)
        torch.save({"k": logged, "grads": grads}, f"{out}/rank{rank}.pt")


def test_ddp_ogm_ge_gives_the_global_batch_coefficients_and_gradients(tmp_path: Path) -> None:
    # one process over the global batch of 8 tiles
    k, grads = _ogm_ge_step(slice(0, 8), lambda value, reduce_op: value, lambda grad: None)
    half, _ = _ogm_ge_step(slice(0, 4), lambda value, reduce_op: value, lambda grad: None)
    assert half != pytest.approx(k)  # a process's own half alone gives other coefficients
    assert min(k.values()) < 1.0  # a dominant modality is modulated
    mp.start_processes(
        _ogm_ge_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["k"] == pytest.approx(k, rel=1e-5)
        assert result["grads"].keys() == grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6)
