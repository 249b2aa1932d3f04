"""Shuffling that depends on the seed and the epoch alone, so a resumed fit replays it."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
from torch.utils.data import Sampler

__all__ = ["EpochShuffle"]


class EpochShuffle(Sampler[int]):
    """A permutation of the dataset drawn from ``(seed, epoch)``.

    ``torch``'s default shuffling draws from the process's global random stream, whose state
    after a resume differs from an uninterrupted run's; this one does not. Lightning calls
    :meth:`set_epoch` at every epoch start (as for a ``DistributedSampler``, which replaces it
    under DDP and is seeded by epoch too).
    """

    def __init__(self, data_source: Sized, seed: int) -> None:
        self.size = len(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.size
