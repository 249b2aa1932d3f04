"""The sliding-window grid (last window flush with the border) and the strip accumulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudxfer.mapping.options import WINDOW

__all__ = ["WINDOW", "FinishedRows", "StripAccumulator", "window_offsets"]


def window_offsets(length: int, size: int = WINDOW, stride: int = WINDOW) -> list[int]:
    """Start offsets of windows along one axis: every ``stride``, the last flush with the end.

    Args:
        length: Scene length along the axis (>= ``size``).
        size: Window length.
        stride: Step between windows (1..``size``, so every pixel is covered).

    Returns:
        Increasing offsets; the last one is ``length - size``.

    Raises:
        ValueError: ``length < size`` or a stride outside 1..``size``.

    """
    if not 1 <= stride <= size:
        raise ValueError(f"stride must lie in 1..{size} (every pixel covered), got {stride}")
    if length < size:
        raise ValueError(f"the scene is {length} px along an axis, smaller than the window {size}")
    offsets = list(range(0, length - size + 1, stride))
    if offsets[-1] != length - size:
        offsets.append(length - size)
    return offsets


@dataclass(frozen=True)
class FinishedRows:
    """Output rows no later window touches: probability sums and weights from ``top``."""

    top: int
    sums: np.ndarray  # (classes, rows, width) float32
    weights: np.ndarray  # (rows, width) float32: number of windows that covered each pixel


class StripAccumulator:
    """Sums class probabilities of the windows of one strip of window rows at a time.

    Windows of a strip all start at the same row ``r``; rows before the next strip's start
    are then final and handed out (:meth:`finish`), and the rows the next strip overlaps are
    carried over. The buffer is ``(classes, size, width)``: O(width x window x classes),
    whatever the scene's height.

    Args:
        width: Scene width.
        classes: Number of classes.
        size: Window side.

    """

    def __init__(self, width: int, classes: int, size: int = WINDOW) -> None:
        self.width = width
        self.size = size
        self.sums = np.zeros((classes, size, width), np.float32)
        self.weights = np.zeros((size, width), np.float32)
        self.top = 0
        """Scene row of the buffer's first row (the current strip's start)."""

    def add(self, col: int, probs: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add one window's class probabilities (classes,) at column ``col`` of the strip.

        ``valid`` (size, size) bool limits the window's contribution to its valid pixels.
        """
        cols = slice(col, col + self.size)
        weight = np.ones((self.size, self.size), np.float32) if valid is None else valid
        self.sums[:, :, cols] += probs.astype(np.float32)[:, None, None] * weight[None]
        self.weights[:, cols] += weight

    def finish(self, next_top: int | None) -> FinishedRows:
        """Hand out rows ``[top, next_top)`` (all buffered rows when None) and move on.

        Args:
            next_top: Start row of the next strip (> ``top``), or None after the last strip.

        """
        rows = self.size if next_top is None else next_top - self.top
        if not 0 < rows <= self.size:
            raise ValueError(f"next strip must start 1..{self.size} rows after {self.top}")
        done = FinishedRows(self.top, self.sums[:, :rows].copy(), self.weights[:rows].copy())
        # carry the overlapped rows up to the buffer's top, clear the rest
        keep = self.size - rows
        self.sums[:, :keep] = self.sums[:, rows:]
        self.weights[:keep] = self.weights[rows:]
        self.sums[:, keep:] = 0.0
        self.weights[keep:] = 0.0
        self.top += rows
        return done
