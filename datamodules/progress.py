"""One progress line on stderr, rewritten in place at most a few times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts work done and shows ``<what>: <done>/<total> (<rate>/s)`` on one line.

    Args:
        what: What is counted (``reading patch headers``).
        total: How many there are.
        stream: Where the line goes (stderr).
        every: Seconds between redraws.
        done: Items done before (a resumed job): counted, not in the rate.

    """

    def __init__(
        self,
        what: str,
        total: int,
        stream: TextIO | None = None,
        every: float = 1.0,
        done: int = 0,
    ) -> None:
        self.what = what
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.done = self.resumed = done
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items; redraw when ``every`` seconds have passed."""
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self._draw(end="\r")

    def close(self) -> float:
        """Draw the final count on its own line; return the seconds taken."""
        self._draw(end="\n")
        return time.perf_counter() - self.start

    def _draw(self, end: str) -> None:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        rate = (self.done - self.resumed) / seconds
        resumed = f", resumed at {self.resumed:,}" if self.resumed else ""
        self.stream.write(
            f"{self.what}: {self.done:,}/{self.total:,} ({rate:,.0f}/s, {seconds:.0f} s"
            f"{resumed}){end}"
        )
        self.stream.flush()
