"""LMMD (the DSAN baseline's alignment loss): by hand, its class mask, its descent, its ramp."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cloudxfer.lmmd import (
    class_weights,
    gaussian_kernels,
    lmmd,
    lmmd_over_ranks,
    lmmd_ramp,
    shared_classes,
)
from tests.gloo import free_port, gloo_group


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread (two threads spin for seconds on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _kernel(a: torch.Tensor, b: torch.Tensor, bandwidth: float, mul: float, num: int) -> float:
    distance = float((a - b).pow(2).sum())
    base = bandwidth / mul ** (num // 2)
    return sum(math.exp(-distance / (base * mul**i)) for i in range(num))


def test_lmmd_equals_the_per_class_sum_written_out() -> None:
    torch.manual_seed(0)
    source = torch.randn(4, 3)
    target = torch.randn(5, 3)
    labels = torch.tensor([0, 0, 2, 2])  # class 1 has no source sample: left out
    # the target predicts classes 0, 1 and 2 (argmax), so the mask is {0, 2}
    predicted = torch.tensor([0, 2, 1, 0, 2])
    probs = torch.softmax(torch.randn(5, 3) + 4 * torch.eye(3)[predicted], dim=1)
    everything = torch.cat([source, target])
    pairs = [(i, j) for i in range(9) for j in range(9) if i != j]
    bandwidth = sum(float((everything[i] - everything[j]).pow(2).sum()) for i, j in pairs) / 72
    total = 0.0
    for c in (0, 2):
        ws = [1.0 / 2 if int(y) == c else 0.0 for y in labels]
        wt = [float(p[c]) / float(probs[:, c].sum()) for p in probs]
        for i in range(4):
            for j in range(4):
                total += ws[i] * ws[j] * _kernel(source[i], source[j], bandwidth, 2.0, 5)
        for i in range(5):
            for j in range(5):
                total += wt[i] * wt[j] * _kernel(target[i], target[j], bandwidth, 2.0, 5)
        for i in range(4):
            for j in range(5):
                total -= 2 * ws[i] * wt[j] * _kernel(source[i], target[j], bandwidth, 2.0, 5)
    expected = total / 2
    assert float(lmmd(source, target, labels, probs)) == pytest.approx(expected, rel=1e-5)


def test_lmmd_is_zero_for_the_same_class_conditional_distributions() -> None:
    features = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    assert float(lmmd(features, features.clone(), labels, one_hot)) == pytest.approx(0, abs=1e-6)
    # shifting the target features apart makes it positive
    assert float(lmmd(features, features + 3.0, labels, one_hot)) > 0.1


def test_class_mask_is_source_labels_and_target_predictions() -> None:
    labels = torch.tensor([0, 0, 1, 3])
    probs = torch.eye(5)[torch.tensor([1, 2, 3, 3, 4])] * 0.6 + 0.08  # argmax 1, 2, 3, 3, 4
    assert shared_classes(labels, probs).tolist() == [1, 3]
    torch.manual_seed(0)
    source, target = torch.randn(4, 2), torch.randn(5, 2)
    value = lmmd(source, target, labels, probs)
    # a source class the target never predicts (0) does not enter: reweighting the target
    # samples on it (their argmax unchanged) changes nothing; on a masked class (1) it does
    for column, enters in ((0, False), (1, True)):
        reweighted = probs.clone()
        reweighted[:, column] = torch.tensor([0.3, 0.01, 0.2, 0.05, 0.1])
        changed = not bool(torch.isclose(lmmd(source, target, labels, reweighted), value))
        assert changed == enters
    # no class on both sides: nothing to align
    none = torch.eye(5)[torch.tensor([4, 4, 4, 4, 4])]
    assert float(lmmd(source, target, labels, none)) == 0.0


def test_lmmd_decreases_under_gradient_steps_on_shifted_gaussians() -> None:
    """Class-conditional Gaussians, the target shifted: descending LMMD moves the shift back."""
    generator = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    labels = torch.arange(3).repeat_interleave(20)
    source = means[labels] + 0.5 * torch.randn(60, 2, generator=generator)
    target_points = means[labels] + 0.5 * torch.randn(60, 2, generator=generator)
    shift = torch.tensor([1.5, -1.0])
    offset = torch.zeros(2, requires_grad=True)  # the "network": target features + offset
    probs = torch.nn.functional.one_hot(labels, 3).float()
    values = []
    for _ in range(20):  # plain gradient descent, step 0.5
        loss = lmmd(source, target_points + shift + offset, labels, probs)
        (gradient,) = torch.autograd.grad(loss, offset)
        offset = (offset - 0.5 * gradient).detach().requires_grad_(True)
        values.append(float(loss.detach()))
    assert values[-1] < 0.1 * values[0]
    assert all(
        later <= earlier + 1e-4 for earlier, later in zip(values[:-1], values[1:], strict=True)
    )
    torch.testing.assert_close(offset.detach(), -shift, atol=0.2, rtol=0.0)


def test_gradients_reach_both_feature_sets_but_not_the_target_probabilities() -> None:
    source = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(6, 3, requires_grad=True)
    logits = torch.randn(6, 2, requires_grad=True)
    loss = lmmd(source, target, torch.tensor([0, 1, 0, 1]), torch.softmax(logits, dim=1))
    loss.backward()
    assert source.grad is not None and source.grad.abs().sum() > 0
    assert target.grad is not None and target.grad.abs().sum() > 0
    assert logits.grad is None


def test_class_weights_sum_to_one_per_present_class() -> None:
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]])
    weights = class_weights(probs, torch.tensor([0, 1, 2]))
    assert weights[:, 0].tolist() == pytest.approx([0.5 / 0.7, 0.2 / 0.7])
    assert weights[:, 2].tolist() == [0.0, 0.0]  # no mass: no weight, no division by zero


def test_kernel_sum_is_num_on_the_diagonal() -> None:
    kernels = gaussian_kernels(torch.randn(5, 2), kernel_mul=2.0, kernel_num=5)
    assert torch.allclose(kernels.diagonal(), torch.full((5,), 5.0))


def test_ramp_goes_from_zero_to_nearly_one() -> None:
    # 2 / (1 + exp(-10 p)) - 1 = tanh(5 p): 0.987 at half the budget, 0.99991 at its end
    assert lmmd_ramp(0.0) == 0.0
    assert lmmd_ramp(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert lmmd_ramp(0.5) == pytest.approx(0.987, abs=5e-4)
    assert lmmd_ramp(1.0) == pytest.approx(math.tanh(5.0)) and lmmd_ramp(1.0) > 0.9999
    assert lmmd_ramp(2.0) == lmmd_ramp(1.0) and lmmd_ramp(-1.0) == 0.0


def _worker(rank: int, world: int, port: int, data: dict[str, torch.Tensor], out: str) -> None:
    with gloo_group(rank, world, port):

        def shard(t: torch.Tensor) -> torch.Tensor:
            n = t.shape[0] // world
            return t[rank * n : (rank + 1) * n]

        source = shard(data["source"]).clone().requires_grad_(True)
        target = shard(data["target"]).clone().requires_grad_(True)
        loss = lmmd_over_ranks(source, target, shard(data["labels"]), shard(data["probs"]))
        loss.backward()
        result = {"loss": loss.detach(), "source": source.grad, "target": target.grad}
        torch.save(result, f"{out}/rank{rank}.pt")


def test_ddp_lmmd_is_the_global_batch_value_and_gradient(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    data = {
        "source": torch.randn(8, 4, generator=generator),
        "target": torch.randn(8, 4, generator=generator) + 0.5,
        "labels": torch.tensor([0, 1, 2, 0, 1, 1, 2, 0]),
        "probs": torch.softmax(torch.randn(8, 3, generator=generator), dim=1),
    }
    source = data["source"].clone().requires_grad_(True)
    target = data["target"].clone().requires_grad_(True)
    reference = lmmd(source, target, data["labels"], data["probs"])
    reference.backward()
    assert source.grad is not None and target.grad is not None
    half = lmmd(data["source"][:4], data["target"][:4], data["labels"][:4], data["probs"][:4])
    assert not torch.isclose(half, reference)  # a process's own batch alone differs
    mp.start_processes(
        _worker, args=(2, free_port(), data, str(tmp_path)), nprocs=2, start_method="spawn"
    )
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["loss"], reference.detach())
        # DDP averages the processes' parameter gradients: each holds 2x its share, so the
        # average is the global batch's gradient.
        rows = slice(4 * rank, 4 * rank + 4)
        torch.testing.assert_close(result["source"] / 2, source.grad[rows])
        torch.testing.assert_close(result["target"] / 2, target.grad[rows])
