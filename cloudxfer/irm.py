"""Information Regulation Mechanism (IRM): per-modality loss weights from the auxiliaries.

The contribution of a modality for one sample is the softmax probability of the class its
auxiliary model predicts. The discrepancy ratios weight each modality's distillation loss so the
modality that contributes less is emphasised: ``rho_opt = sum S_sar / sum S_opt`` and
``rho_sar = sum S_opt / sum S_sar`` (METHOD.md, eq. 5-7). Weights carry no gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["bound_ratios", "contribution", "global_sum", "modality_weights"]


def contribution(logits: Tensor, reference: Tensor | None = None) -> Tensor:
    """Per-sample contribution S: the softmax probability of the argmax class.

    Args:
        logits: auxiliary model outputs, shape (B, M).
        reference: with the source model's outputs (B, M) here, S is the auxiliary's
            probability of the class the *source model* predicts: the variant that reads the
            arrow from the source output into the ratio in the paper's Fig. 4.

    Returns:
        Detached tensor of shape (B,) with values in [1/M, 1] (in [0, 1] with ``reference``).

    """
    if logits.ndim != 2:
        raise ValueError(
            f"contribution() expects logits of shape (B, M), got {tuple(logits.shape)}"
        )
    probabilities = torch.softmax(logits.detach().float(), dim=1)
    if reference is None:
        return probabilities.amax(dim=1)
    index = reference.detach().argmax(dim=1, keepdim=True)
    return probabilities.gather(1, index).squeeze(1)


def global_sum(values: Tensor) -> Tensor:
    """Sum ``values`` over the local batch and, under torch.distributed, over all ranks.

    Every rank then holds the sum over the global batch, so weights derived from it are identical
    on all ranks (the DDP requirement of IRM).
    """
    total = values.sum()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        total = total.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def modality_weights(
    logits_opt: Tensor,
    logits_sar: Tensor,
    per_sample: bool = False,
    reference: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Discrepancy ratios (rho_opt, rho_sar) weighting the two modality losses.

    Args:
        logits_opt: optical auxiliary outputs, shape (B, M).
        logits_sar: SAR auxiliary outputs, shape (B, M).
        per_sample: if True, return per-sample ratios ``S_sar,i / S_opt,i`` of shape (B,);
            otherwise scalar ratios of batch sums (all-reduced across DDP ranks).
        reference: source model outputs for the Fig. 4 arrow variant (see ``contribution``).

    Returns:
        Detached ``(rho_opt, rho_sar)``; with batch sums ``rho_opt * rho_sar == 1``.

    """
    if logits_opt.shape != logits_sar.shape:
        raise ValueError(
            "modality_weights() needs logits of equal shape, got "
            f"{tuple(logits_opt.shape)} and {tuple(logits_sar.shape)}"
        )
    s_opt = contribution(logits_opt, reference).clamp_min(1e-12)
    s_sar = contribution(logits_sar, reference).clamp_min(1e-12)
    if per_sample:
        return s_sar / s_opt, s_opt / s_sar
    sum_opt = global_sum(s_opt)
    sum_sar = global_sum(s_sar)
    return sum_sar / sum_opt, sum_opt / sum_sar


def bound_ratios(rho_opt: Tensor, rho_sar: Tensor, bound: float) -> tuple[Tensor, Tensor, Tensor]:
    """Clip the ratios to ``[1 / bound, bound]``; also return the share of clipped entries.

    With contributions read at the source model's class (the Fig. 4 arrow variant) S can be
    near 0, so a ratio has no bound: a batch where one auxiliary gives f_S's class ~0 would
    weigh its loss by 1e10. Eq. 5's own contributions lie in [1/M, 1], so its ratios lie in
    [1/M, M]; the variant is held to that same range (``bound`` = M, the classes).
    """
    if bound < 1:
        raise ValueError(f"bound must be >= 1, got {bound}")
    clipped = ((rho_opt > bound) | (rho_opt < 1 / bound)).float().mean()
    low, high = 1 / bound, float(bound)
    return rho_opt.clamp(low, high), rho_sar.clamp(low, high), clipped
