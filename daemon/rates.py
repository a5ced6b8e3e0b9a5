"""Acquisition and processing rates of a live session over a sliding window."""

from __future__ import annotations

import time
from collections import deque

__all__ = ["RateWindow"]


class RateWindow:
    """Acquisition and processing rates over the last ten minutes, from sampled counts."""

    WINDOW_S = 600.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque()

    def sample(self, seen: int, finished: int) -> None:
        """Add the counts of exposures seen and finished so far."""
        now = time.monotonic()
        self._samples.append((now, seen, finished))
        while self._samples and now - self._samples[0][0] > self.WINDOW_S:
            self._samples.popleft()

    def per_minute(self) -> tuple[float, float]:
        """(seen, finished) per minute over the window; zeros before two samples."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        t0, seen0, done0 = self._samples[0]
        t1, seen1, done1 = self._samples[-1]
        minutes = max((t1 - t0) / 60.0, 1e-9)
        return round((seen1 - seen0) / minutes, 2), round((done1 - done0) / minutes, 2)
