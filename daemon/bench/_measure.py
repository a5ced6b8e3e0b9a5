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


def _rss_bytes() -> tuple[int, int]:
    """Resident bytes, and of those the anonymous ones (the process's own memory, without the
    pages of mapped files that the kernel can drop and read again)."""
    try:
        with open("/proc/self/statm") as handle:
            resident, shared = (int(v) * _PAGE for v in handle.read().split()[1:3])
            return resident, resident - shared
    except OSError:  # not Linux: fall back to the lifetime peak
        import resource

        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        return peak, peak


@dataclass
class PeakMemory:
    """Peak resident memory above the starting level, the same of its anonymous part (what
    the process holds itself, not file pages it maps), and peak CUDA allocation (GiB)."""

    rss_increase_gib: float = 0.0
    anonymous_increase_gib: float = 0.0
    cuda_peak_gib: float | None = None


@contextmanager
def peak_memory(device: str = "cpu", interval_s: float = 0.02) -> Iterator[PeakMemory]:
    """Sample memory in a background thread while the block runs."""
    import torch

    result = PeakMemory()
    baseline = _rss_bytes()
    peak = list(baseline)
    stop = threading.Event()

    def take() -> None:
        peak[:] = [max(p, now) for p, now in zip(peak, _rss_bytes(), strict=True)]

    def sample() -> None:
        while not stop.is_set():
            take()
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
        take()
        result.rss_increase_gib = round((peak[0] - baseline[0]) / 2**30, 3)
        result.anonymous_increase_gib = round((peak[1] - baseline[1]) / 2**30, 3)
        if cuda:
            result.cuda_peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 3)


def synchronize(device: object) -> None:
    """Wait for the GPU's queued work when ``device`` is CUDA (a timer read before it measures
    the queueing, not the work); nothing on the CPU."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
