"""A value computed at most once per key and interval, shared by the requests that ask meanwhile.

A session's summary takes some twenty queries; many clients polling a running session would
otherwise queue them all on its one query thread. Requests for a key that arrive while its
value is being computed wait for that computation instead of starting another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Recent"]

T = TypeVar("T")


class Recent(Generic[T]):
    """Values no older than ``max_age_s``, one computation per key at a time.

    Parameters
    ----------
    max_age_s
        How long a computed value is served again.
    """

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._values: dict[Hashable, tuple[float, T]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        #: Computations run (for tests and benchmarks).
        self.computed = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value of ``key``: the stored one while it is fresh, else ``compute()``'s."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._values.get(key)
            if found is not None and time.monotonic() - found[0] < self.max_age_s:
                return found[1]
            value = compute()  # an error is raised to this caller and nothing is stored
            self._values[key] = (time.monotonic(), value)
            self.computed += 1
            return value
