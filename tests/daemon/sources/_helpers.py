"""Waiting on a source's queue with a deadline (no fixed sleeps)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from causalscope.daemon.sources import MovieReady, Rejected, SourceEvent


def take(
    events: queue.Queue[SourceEvent], n: int = 1, *, timeout_s: float = 5.0
) -> list[SourceEvent]:
    """The next ``n`` events; fails if they do not all come within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    got: list[SourceEvent] = []
    while len(got) < n:
        remaining = deadline - time.monotonic()
        try:
            got.append(events.get(timeout=max(0.0, remaining)))
        except queue.Empty:
            raise AssertionError(
                f"only {len(got)} of {n} events within {timeout_s} s: {got}"
            ) from None
    return got


def take_ready(events: queue.Queue[SourceEvent], *, timeout_s: float = 5.0) -> MovieReady:
    (event,) = take(events, timeout_s=timeout_s)
    assert isinstance(event, MovieReady), event
    return event


def take_rejected(events: queue.Queue[SourceEvent], *, timeout_s: float = 5.0) -> Rejected:
    (event,) = take(events, timeout_s=timeout_s)
    assert isinstance(event, Rejected), event
    return event


def wait_until(predicate: Callable[[], bool], *, timeout_s: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.01)


def assert_empty(events: queue.Queue[SourceEvent]) -> None:
    leftover = []
    while not events.empty():
        leftover.append(events.get_nowait())
    assert not leftover, leftover
