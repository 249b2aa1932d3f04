"""CycleGAN's learning-rate policy: constant for the first half of the epochs, then linear to 0.

CycleGAN trains 100 epochs at the initial rate and 100 more with the rate falling linearly,
epoch by epoch, on a line that reaches 0 one epoch after its last (its last epoch trains at
lr/101). Here the same policy is fitted to the configured budget ``epochs``
(``trainer.max_epochs``): the first ``ceil(epochs / 2)`` epochs at the initial rate, then a
linear decay whose line reaches 0 at the end of the last epoch, so the schedule finishes exactly
with the budget (200 epochs reproduce CycleGAN's factors). Stepped once per epoch.
"""

from __future__ import annotations

import torch

__all__ = ["CycleGanPolicy", "constant_epochs", "cyclegan_lr_factor", "cyclegan_scheduler"]


def constant_epochs(epochs: int) -> int:
    """Epochs trained at the initial rate: the first half (rounded up) of ``epochs``."""
    return (epochs + 1) // 2


def cyclegan_lr_factor(epoch: int, epochs: int) -> float:
    """Factor of the initial rate in (0-based) ``epoch`` of ``epochs``; 0 from ``epochs`` on.

    1 for the first :func:`constant_epochs` epochs, then on the line from 1 at the last
    constant epoch to 0 at epoch ``epochs`` (the end of the budget).
    """
    if epochs < 1:
        raise ValueError(f"the CycleGAN policy needs a positive epoch budget, got {epochs}")
    decay = epochs - constant_epochs(epochs) + 1
    return max(0.0, min(1.0, (epochs - epoch) / decay))


class CycleGanPolicy:
    """:func:`cyclegan_lr_factor` for a fixed budget, as a ``LambdaLR`` multiplier.

    A callable object, not a closure: ``LambdaLR`` saves its attributes (the budget) in the
    scheduler's state, so a resumed fit keeps the schedule it started with.
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def __call__(self, epoch: int) -> float:
        """Return the factor of ``epoch``."""
        return cyclegan_lr_factor(epoch, self.epochs)


def cyclegan_scheduler(
    optimiser: torch.optim.Optimizer, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Return a per-epoch scheduler of ``optimiser`` on CycleGAN's policy over ``epochs``."""
    cyclegan_lr_factor(0, epochs)  # refuse a budget that is not one
    return torch.optim.lr_scheduler.LambdaLR(optimiser, CycleGanPolicy(epochs))
