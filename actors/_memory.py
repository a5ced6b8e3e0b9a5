"""A worker process's memory: its resident size, from ``/proc``, and its C heap.

glibc serves each allocation above 32 MiB (its largest mmap threshold) with a fresh ``mmap``
and unmaps it on free, so every movie-sized temporary is page-faulted and zeroed by the kernel
anew. Motion correction of a 4096^2 x 40 movie spent 184 s in the kernel against 174 s of its
own work that way (system against user time, on 2 loaded cores), and 6 s with freed memory
kept in the heap; at 1024^2 x 20 the kernel time fell from 1.1 s to 0.01 s. An exposure worker
therefore keeps freed memory in its heap while it processes an exposure
(:func:`keep_freed_memory`) and gives it all back to the system after each one
(:func:`release_freed_memory`), so that its resident size between exposures, which the daemon
reads to recycle a worker that grew too big, is what it really holds. Outside glibc (musl,
macOS) both do nothing.

A worker whose resident size after an exposure is at most :data:`KEPT_HEAP_BYTES` keeps its
heap for the next one (:func:`release_if_large`): the next exposure would otherwise fault its
pages in again. At 1024^2 x 20 (the exposure worker, 1.0 GiB resident with the heap kept
against 0.46 GiB given back) that was 0.15-0.25 s per exposure: motion and CTF 1.35-1.45 s
against 1.53-1.78 s, the whole exposure 2.35-2.46 s against 2.54-2.88 s.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

__all__ = [
    "KEPT_HEAP_BYTES",
    "ONE_HEAP_ENV",
    "keep_freed_memory",
    "release_freed_memory",
    "release_if_large",
    "resident_bytes",
]

#: the environment that gives a process one heap from its start (glibc reads it before any
#: thread exists; see :func:`keep_freed_memory`)
ONE_HEAP_ENV = {"MALLOC_ARENA_MAX": "1"}

#: a worker at most this large after an exposure keeps its heap for the next (a 1024^2
#: exposure's worker: about 1 GiB; a 4096^2 one's is several and gives it back)
KEPT_HEAP_BYTES = 3 * 2**29

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def resident_bytes(pid: int | None = None) -> int | None:
    """Resident set size of process ``pid`` (default: this one) in bytes; None if unknown."""
    path = Path("/proc") / (str(pid) if pid is not None else "self") / "statm"
    try:
        pages = int(path.read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def keep_freed_memory() -> bool:
    """From now on, this process's large allocations come from its heap and freed memory
    stays there for the next one (no ``mmap`` per allocation, no trimming); False where the
    C library is not glibc.

    Every thread allocates from the one main heap: glibc gives other threads heaps of their
    own of at most 64 MiB, which map anything larger afresh whatever the settings (the
    motion's Python threads spent 100 s in the kernel at 4096^2 x 40 that way). A thread
    that allocated before this call keeps the heap it got, and later threads are handed
    those heaps again: call it before any other thread allocates (a movie read on threads
    first left 4096^2 x 40 motion at 62 s instead of 44 s; some libraries start threads
    when imported), or start the process with ``MALLOC_ARENA_MAX=1`` (:data:`ONE_HEAP_ENV`,
    as the exposure actors are).
    """
    libc = _glibc()
    if libc is None:
        return False
    return all(
        bool(libc.mallopt(parameter, value))
        for parameter, value in (
            (_M_ARENA_MAX, 1),
            (_M_MMAP_MAX, 0),
            (_M_TRIM_THRESHOLD, 2**31 - 1),
        )
    )


def release_freed_memory() -> bool:
    """Give the heap's free memory back to the system (``malloc_trim``); True if any was."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def release_if_large(limit_bytes: int = KEPT_HEAP_BYTES) -> bool:
    """:func:`release_freed_memory` when this process's resident size is above
    ``limit_bytes`` (or unknown); True if memory was given back."""
    resident = resident_bytes()
    if resident is not None and resident <= limit_bytes:
        return False
    return release_freed_memory()
