"""Compute threads of a run: never more than the machine's cores, fixed where results must repeat.

On a small CPU machine, oversubscription (intra-op threads + DataLoader workers + BLAS threads
of the workers > cores) slows a training step by up to 8x; pinning the thread count also makes
float reductions, and so results, repeat on any machine with the same CPU model.
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["available_cores", "configure_matmul_precision", "configure_threads", "images_to"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else the count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def configure_threads(threads: int | None, num_workers: int = 0) -> int:
    """Set torch's intra-op threads so threads + loader workers never exceed the cores.

    Args:
        threads: Wanted intra-op threads; None takes every core not used by a worker.
        num_workers: DataLoader worker processes (each runs one thread; torch sets that).

    Returns:
        The intra-op thread count set.

    Raises:
        ValueError: ``threads`` < 1 or ``num_workers`` < 0.

    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 (or null for all cores), got {threads}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    cores = available_cores()
    budget = max(1, cores - num_workers)
    count = budget if threads is None else min(threads, budget)
    torch.set_num_threads(count)
    # OpenMP/MKL in processes this one starts (DataLoader workers, subprocess stages) inherit
    # these; a worker runs one thread.
    os.environ["OMP_NUM_THREADS"] = str(count)
    os.environ["MKL_NUM_THREADS"] = str(count)
    return count


def configure_matmul_precision(precision: str | None, cuda: bool | None = None) -> bool:
    """Set torch's float32 matmul precision for a CUDA run (profile ``matmul_precision``).

    ``high`` lets float32 matrix products use TF32 tensor cores (what Lightning advises on such
    a GPU); a CPU run is left untouched, so its numbers stay those of exact float32.

    Args:
        precision: ``highest``, ``high`` or ``medium``; None leaves torch's default.
        cuda: Whether the run uses CUDA (default: whether a CUDA device is visible).

    Returns:
        Whether the precision was set.

    Raises:
        ValueError: ``precision`` is not one of torch's three values.

    """
    if precision is None:
        return False
    if precision not in ("highest", "high", "medium"):
        raise ValueError(
            f"matmul_precision must be highest, high, medium or null, got {precision!r}"
        )
    if not (torch.cuda.is_available() if cuda is None else cuda):
        return False
    torch.set_float32_matmul_precision(precision)
    return True


def images_to(
    batch: dict[str, Any],
    device: torch.device | str | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, Any]:
    """Return the batch with its 4-D ``image_*`` tensors on ``device`` in ``memory_format``.

    Channels-last batches feed channels-last convolutions without a layout conversion.
    """
    out = dict(batch)
    for key, value in batch.items():
        if key.startswith("image_") and isinstance(value, torch.Tensor) and value.ndim == 4:
            moved = value if device is None else value.to(device)
            out[key] = moved.contiguous(memory_format=memory_format)
    return out
