import math

import pytest
import torch
import torch.multiprocessing as mp

from cloudxfer.irm import bound_ratios, contribution, modality_weights
from tests.gloo import free_port, gloo_group


def test_contribution_is_softmax_of_argmax_class() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 2.0]])
    e = math.e
    expected = torch.tensor(
        [e**2 / (e**2 + 2), 1 / 3, e**3 / (e**1 + e**3 + e**2)], dtype=torch.float32
    )
    torch.testing.assert_close(contribution(logits), expected)


def test_contribution_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        contribution(torch.zeros(4))


def test_batch_weights_by_hand() -> None:
    # opt: confident on sample 0 (S=0.9), unsure on 1 (S=0.5); sar: S=0.6 and 0.7.
    logits_opt = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5]]))
    logits_sar = torch.log(torch.tensor([[0.4, 0.6], [0.7, 0.3]]))
    rho_opt, rho_sar = modality_weights(logits_opt, logits_sar)
    assert rho_opt.shape == () and rho_sar.shape == ()
    assert float(rho_opt) == pytest.approx((0.6 + 0.7) / (0.9 + 0.5))
    assert float(rho_sar) == pytest.approx((0.9 + 0.5) / (0.6 + 0.7))
    assert float(rho_opt * rho_sar) == pytest.approx(1.0)


def test_per_sample_weights_by_hand_and_bounds() -> None:
    logits_opt = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5]]))
    logits_sar = torch.log(torch.tensor([[0.4, 0.6], [0.7, 0.3]]))
    rho_opt, rho_sar = modality_weights(logits_opt, logits_sar, per_sample=True)
    torch.testing.assert_close(rho_opt, torch.tensor([0.6 / 0.9, 0.7 / 0.5]))
    torch.testing.assert_close(rho_opt * rho_sar, torch.ones(2))
    m = 5
    big = torch.randn(64, m) * 5
    r, _ = modality_weights(big, torch.randn(64, m) * 5, per_sample=True)
    assert bool((r >= 1 / m - 1e-6).all() and (r <= m + 1e-6).all())


def test_superior_modality_gets_weight_below_one() -> None:
    confident = torch.tensor([[8.0, 0.0, 0.0]] * 4)
    unsure = torch.tensor([[0.1, 0.0, 0.0]] * 4)
    rho_opt, rho_sar = modality_weights(confident, unsure)
    assert float(rho_opt) < 1 < float(rho_sar)


def test_weights_carry_no_gradient() -> None:
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    for per_sample in (False, True):
        rho_opt, rho_sar = modality_weights(a, b, per_sample=per_sample)
        assert not rho_opt.requires_grad and not rho_sar.requires_grad


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        modality_weights(torch.zeros(2, 3), torch.zeros(2, 4))


def _worker(
    rank: int, world: int, port: int, opt: torch.Tensor, sar: torch.Tensor, out: str
) -> None:
    with gloo_group(rank, world, port):
        shard = slice(rank * opt.shape[0] // world, (rank + 1) * opt.shape[0] // world)
        rho_opt, rho_sar = modality_weights(opt[shard], sar[shard])
        torch.save({"rho_opt": rho_opt, "rho_sar": rho_sar}, f"{out}/rank{rank}.pt")


def test_ddp_weights_equal_single_process_over_global_batch(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    opt = torch.randn(16, 10, generator=generator) * 3
    sar = torch.randn(16, 10, generator=generator)
    # Local shards alone would give different weights: the all-reduce is what makes them equal.
    local_opt, _ = modality_weights(opt[:8], sar[:8])
    reference_opt, reference_sar = modality_weights(opt, sar)
    assert not torch.isclose(local_opt, reference_opt)
    mp.start_processes(
        _worker, args=(2, free_port(), opt, sar, str(tmp_path)), nprocs=2, start_method="spawn"
    )
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(result["rho_opt"], reference_opt)
        torch.testing.assert_close(result["rho_sar"], reference_sar)


def test_contribution_on_the_source_models_class_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
    source = torch.tensor([[0.0, 9.0, 0.0], [0.0, 0.0, 9.0]])  # f_S predicts class 1, class 2
    assert contribution(logits).tolist() == pytest.approx([0.7, 0.6])
    assert contribution(logits, source).tolist() == pytest.approx([0.2, 0.6])
    other = torch.log(torch.tensor([[0.1, 0.8, 0.1], [0.5, 0.4, 0.1]]))
    rho_opt, rho_sar = modality_weights(logits, other, reference=source)
    # S_opt = 0.2 + 0.6, S_sar = 0.8 + 0.1 on f_S's classes
    assert rho_opt.item() == pytest.approx(0.9 / 0.8) and rho_sar.item() == pytest.approx(0.8 / 0.9)


def test_the_source_referenced_ratio_is_held_to_eq5s_range() -> None:
    # the SAR auxiliary gives f_S's class ~0 on every tile: the raw ratio explodes
    source = torch.tensor([[9.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
    opt = torch.log(torch.tensor([[0.6, 0.2, 0.2], [0.5, 0.3, 0.2]]))
    sar = torch.tensor([[-40.0, 20.0, 0.0], [-40.0, 0.0, 20.0]])
    rho_opt, rho_sar = modality_weights(opt, sar, reference=source)
    assert rho_sar.item() > 1e10
    bounded_opt, bounded_sar, clipped = bound_ratios(rho_opt, rho_sar, bound=3)
    assert (bounded_opt.item(), bounded_sar.item(), clipped.item()) == pytest.approx((1 / 3, 3, 1))
    # within [1/M, M] nothing changes (eq. 5's own ratios always are), per sample too
    per_opt, per_sar = modality_weights(opt, opt.flip(0), per_sample=True, reference=source)
    same_opt, same_sar, none = bound_ratios(per_opt, per_sar, bound=3)
    assert torch.equal(same_opt, per_opt) and torch.equal(same_sar, per_sar) and none.item() == 0
    with pytest.raises(ValueError, match="bound must be >= 1"):
        bound_ratios(rho_opt, rho_sar, bound=0.5)
