"""Rate-limited logging, so a misbehaving board or a flood cannot fill the disk with logs."""

from __future__ import annotations

import time
from collections.abc import Callable


class LogLimiter:
    """Allows at most `per_window` messages per key in each `window` seconds.

    The per-minute stats line still counts everything; this only bounds how many
    individual examples are written out.
    """

    def __init__(self, per_window: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_window = per_window
        self.window = window
        self.clock = clock
        self._window_start = clock()
        self._counts: dict[str, int] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        if now - self._window_start >= self.window:
            self._window_start = now
            self._counts.clear()
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= self.per_window
