"""Peak memory while a block runs: resident memory sampled on CPU, the allocator on CUDA; and
waiting for a GPU's queued work before a timer is read."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["PeakMemory", "peak_memory", "synchronize"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to the lifetime peak
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class PeakMemory:
    """Peak resident memory above the starting level, and peak CUDA allocation (GiB)."""

    rss_increase_gib: float = 0.0
    cuda_peak_gib: float | None = None


@contextmanager
def peak_memory(device: str = "cpu", interval_s: float = 0.02) -> Iterator[PeakMemory]:
    """Sample memory in a background thread while the block runs."""
    import torch

    result = PeakMemory()
    baseline = _rss_bytes()
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval_s)

    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        result.rss_increase_gib = round((peak[0] - baseline) / 2**30, 3)
        if cuda:
            result.cuda_peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 3)


def synchronize(device: object) -> None:
    """Wait for the GPU's queued work when ``device`` is CUDA (a timer read before it measures
    the queueing, not the work); nothing on the CPU."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
