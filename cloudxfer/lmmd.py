"""Local maximum mean discrepancy (LMMD), the alignment loss of the DSAN baseline.

Zhu et al., "Deep Subdomain Adaptation Network for Image Classification" (TNNLS 2020):
class-conditional MMD between source features (weighted by their one-hot labels) and target
features (weighted by the network's softmax), each class's weights normalised to sum to one,
with a sum of Gaussian kernels whose bandwidths sit around the batch's mean squared distance.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor

__all__ = [
    "class_weights",
    "gaussian_kernels",
    "lmmd",
    "lmmd_over_ranks",
    "lmmd_ramp",
    "shared_classes",
]


def gaussian_kernels(
    features: Tensor, kernel_mul: float = 2.0, kernel_num: int = 5, bandwidth: float | None = None
) -> Tensor:
    """Sum of ``kernel_num`` Gaussian kernels over all pairs of rows of ``features`` (N, D).

    The base bandwidth is the mean squared pairwise distance (without gradient; or
    ``bandwidth``), divided by ``kernel_mul ** (kernel_num // 2)``; kernel ``i`` uses the base
    times ``kernel_mul ** i``, so the kernels span both sides of the typical distance.
    """
    distances = torch.cdist(features, features).pow(2)
    n = features.shape[0]
    if bandwidth is None:
        base = distances.detach().sum() / max(n * n - n, 1)
        base = base.clamp_min(1e-12)
    else:
        base = torch.as_tensor(bandwidth, dtype=features.dtype, device=features.device)
    base = base / kernel_mul ** (kernel_num // 2)
    return sum(
        (torch.exp(-distances / (base * kernel_mul**i)) for i in range(kernel_num)),
        torch.zeros_like(distances),
    )


def class_weights(probabilities: Tensor, classes: Tensor) -> Tensor:
    """Per-class sample weights (N, K) for the ``classes`` columns, each column summing to 1.

    ``probabilities`` (N, C): one-hot labels (source) or softmax outputs (target). A column
    with no mass stays zero.
    """
    columns = probabilities[:, classes]
    return columns / columns.sum(dim=0, keepdim=True).clamp_min(1e-12)


def shared_classes(source_labels: Tensor, target_probabilities: Tensor) -> Tensor:
    """Classes both in the source labels and among the target's argmax predictions (sorted).

    DSAN's class mask: a class aligns only where the source batch holds samples of it and the
    network predicts it for some target sample of the batch.
    """
    predicted = target_probabilities.argmax(dim=1)
    source = torch.unique(source_labels)
    return source[torch.isin(source, predicted)]


def lmmd(
    source: Tensor,
    target: Tensor,
    source_labels: Tensor,
    target_probabilities: Tensor,
    kernel_mul: float = 2.0,
    kernel_num: int = 5,
) -> Tensor:
    """LMMD between source features (Ns, D) and target features (Nt, D).

    ``(1/K) * sum_c || sum_i ws_ic phi(fs_i) - sum_j wt_jc phi(ft_j) ||^2`` over the K classes
    of :func:`shared_classes` (present among the batch's source labels and predicted for some
    target sample, DSAN's mask); zero where there is none. The target weights carry no
    gradient: the network's softmax only says which class a target feature is aligned with.

    Args:
        source: source features, (Ns, D).
        target: target features, (Nt, D).
        source_labels: (Ns,) class indices of the source samples.
        target_probabilities: (Nt, C) softmax of the network on the target samples.
        kernel_mul: ratio between consecutive kernel bandwidths.
        kernel_num: number of Gaussian kernels.

    """
    num_classes = target_probabilities.shape[1]
    if target.shape[0] == 0:
        return source.sum() * 0.0
    classes = shared_classes(source_labels, target_probabilities)
    if classes.numel() == 0:
        return source.sum() * 0.0
    one_hot = torch.nn.functional.one_hot(source_labels, num_classes).to(source.dtype)
    ws = class_weights(one_hot, classes)
    wt = class_weights(target_probabilities.detach().to(source.dtype), classes)
    kernels = gaussian_kernels(torch.cat([source, target]), kernel_mul, kernel_num)
    ns = source.shape[0]
    k_ss, k_tt, k_st = kernels[:ns, :ns], kernels[ns:, ns:], kernels[:ns, ns:]
    # sum over classes of ws_c^T K ws_c + wt_c^T K wt_c - 2 ws_c^T K wt_c, as matrix products
    total = (
        (ws.T @ k_ss @ ws).diagonal().sum()
        + (wt.T @ k_tt @ wt).diagonal().sum()
        - 2 * (ws.T @ k_st @ wt).diagonal().sum()
    )
    return total / classes.numel()


def lmmd_over_ranks(
    source: Tensor,
    target: Tensor,
    source_labels: Tensor,
    target_probabilities: Tensor,
    kernel_mul: float = 2.0,
    kernel_num: int = 5,
) -> Tensor:
    """LMMD over the global batch of every DDP process (plain :func:`lmmd` on one process).

    Every process gathers all processes' features (with gradients: the gather's backward
    sums each process's gradient into the features it holds) and computes the same global
    value, so DDP's gradient average equals one process's gradient over the global batch.
    The processes' batches must have equal sizes, as a distributed sampler gives them.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return lmmd(source, target, source_labels, target_probabilities, kernel_mul, kernel_num)
    world = dist.get_world_size()
    labels = [torch.empty_like(source_labels) for _ in range(world)]
    dist.all_gather(labels, source_labels.contiguous())
    probabilities = [torch.empty_like(target_probabilities) for _ in range(world)]
    dist.all_gather(probabilities, target_probabilities.detach().contiguous())
    return lmmd(
        torch.cat(dist_fn.all_gather(source.contiguous())),
        torch.cat(dist_fn.all_gather(target.contiguous())),
        torch.cat(labels),
        torch.cat(probabilities),
        kernel_mul,
        kernel_num,
    )


def lmmd_ramp(progress: float, gamma: float = 10.0) -> float:
    """DSAN's weight schedule ``2 / (1 + exp(-gamma * p)) - 1``: 0 at the start, ~1 at the end."""
    p = min(max(progress, 0.0), 1.0)
    return float(2.0 / (1.0 + torch.exp(torch.tensor(-gamma * p))) - 1.0)
