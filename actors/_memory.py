"""Resident memory of a process, from ``/proc`` (Linux; None elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resident_bytes"]


def resident_bytes(pid: int | None = None) -> int | None:
    """Resident set size of process ``pid`` (default: this one) in bytes; None if unknown."""
    path = Path("/proc") / (str(pid) if pid is not None else "self") / "statm"
    try:
        pages = int(path.read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
