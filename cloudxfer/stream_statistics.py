"""Batch-norm running statistics kept apart per input stream (DSAN's optical and SAR batches).

A network that reads two streams through the same batch-norm layers (DSAN: labelled optical
source, unlabelled SAR target) normalises each training batch with its own batch statistics,
but its running statistics, which evaluation uses, would blend both streams. Here the
network's own buffers follow one stream (the one it is evaluated on) and a
:class:`StreamStatistics` holds a second set for the other stream, swapped in around that
stream's forward passes. Affine weights stay shared: only the statistics are per stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["StreamStatistics", "batch_norms"]

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batch_norms(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return the batch-norm layers of ``network`` that keep running statistics, by name."""
    return [
        (name, module)
        for name, module in network.named_modules()
        if isinstance(module, BATCH_NORMS) and module.track_running_stats
    ]


class StreamStatistics(nn.Module):
    """A second set of running statistics for every batch-norm layer of a network.

    Its buffers (``bn<i>_running_mean``, ... in the order of :func:`batch_norms`) are checkpointed
    with the module that holds it. :meth:`active` exchanges them with the network's tensors
    (the tensor objects, not their values: the network's own tensors, which autograd may have
    saved from an earlier forward pass of the step, are left untouched) and exchanges them
    back afterwards, with whatever the forward passes in between added to them; between
    blocks every module holds its own tensors again (DDP broadcasts those at each step).

    Args:
        network: the network whose batch-norm layers it mirrors; the copies start equal to
            its current statistics.

    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.layers = [name for name, _ in batch_norms(network)]
        for index, (_, module) in enumerate(batch_norms(network)):
            for buffer in BUFFERS:
                self.register_buffer(
                    f"bn{index}_{buffer}", getattr(module, buffer).detach().clone()
                )

    def _slots(self, network: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
        """(batch-norm layer, its buffer name, our buffer name); the network must be mirrored."""
        layers = batch_norms(network)
        if [name for name, _ in layers] != self.layers:
            raise ValueError("StreamStatistics: the network's batch-norm layers differ")
        for index, (_, module) in enumerate(layers):
            for buffer in BUFFERS:
                yield module, buffer, f"bn{index}_{buffer}"

    @torch.no_grad()
    def copy_from(self, network: nn.Module) -> None:
        """Set the stored statistics to the network's current ones (e.g. after initial weights)."""
        for module, buffer, ours in self._slots(network):
            getattr(self, ours).copy_(getattr(module, buffer))

    def _swap(self, network: nn.Module) -> None:
        """Exchange the tensors themselves (no in-place copy: autograd's saved tensors stay)."""
        for module, buffer, ours in self._slots(network):
            theirs = getattr(module, buffer)
            setattr(module, buffer, getattr(self, ours))
            setattr(self, ours, theirs)

    @contextmanager
    def active(self, network: nn.Module) -> Iterator[None]:
        """Run the block with the stored statistics in ``network``'s batch-norm layers.

        Batch-norm layers in training mode update them (the stored set then holds the
        update); in evaluation mode they normalise with them.
        """
        self._swap(network)
        try:
            yield
        finally:
            self._swap(network)
