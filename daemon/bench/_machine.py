"""What else ran while a benchmark ran: the load average before and after it, and the processes
outside the benchmark's own process tree that used the CPU meanwhile (Linux's ``/proc``), so
that a number read later says what it shared the cores with."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["busy_others", "cpu_seconds", "machine_load", "own_tree"]

#: processes that used less CPU than this share of the benchmark's wall time are not listed
MIN_SHARE = 0.02
#: at most this many processes listed, busiest first
MOST = 5
_PROC = Path("/proc")


def cpu_seconds() -> dict[int, tuple[str, float, int]]:
    """``pid -> (name, CPU seconds so far, parent pid)`` of every process readable in
    ``/proc`` (empty where there is none)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[int, tuple[str, float, int]] = {}
    for entry in _PROC.glob("[0-9]*"):
        try:
            text = (entry / "stat").read_text()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        # after the name: state ppid ... utime (12th) stime (13th), in clock ticks
        out[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick, int(fields[1]))
    return out


def own_tree(snapshot: dict[int, tuple[str, float, int]], root: int) -> set[int]:
    """``root`` and its descendants in a :func:`cpu_seconds` snapshot."""
    children: dict[int, list[int]] = {}
    for pid, (_, _, parent) in snapshot.items():
        children.setdefault(parent, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo += children.get(pid, [])
    return tree


def busy_others(
    before: dict[int, tuple[str, float, int]],
    after: dict[int, tuple[str, float, int]],
    own: set[int],
    wall_s: float,
) -> list[dict[str, Any]]:
    """The processes not in ``own`` that used at least :data:`MIN_SHARE` of ``wall_s`` of
    CPU between the two snapshots (a process that started meanwhile counts from zero), the
    busiest :data:`MOST` first: pid, name, CPU seconds and the share of one core."""
    rows: list[dict[str, Any]] = []
    for pid, (name, seconds, _) in after.items():
        if pid in own:
            continue
        start = before.get(pid)
        used = seconds - (start[1] if start is not None and start[0] == name else 0.0)
        if used >= MIN_SHARE * wall_s:
            rows.append(
                {
                    "pid": pid,
                    "name": name,
                    "cpu_s": round(used, 2),
                    "cores": round(used / wall_s, 2),
                }
            )
    rows.sort(key=lambda row: -row["cpu_s"])
    return rows[:MOST]


@contextmanager
def machine_load(
    own: Callable[[dict[int, tuple[str, float, int]]], set[int]] | None = None,
) -> Iterator[dict[str, Any]]:
    """A dict filled when the block ends: the load averages (1, 5, 15 min) before and after,
    the CPUs, the wall time, and :func:`busy_others` (``own``: the pids that are the block's
    own, from the last snapshot; default this process and its descendants)."""
    load_before = os.getloadavg()
    before = cpu_seconds()
    started = time.monotonic()
    out: dict[str, Any] = {}
    try:
        yield out
    finally:
        wall = max(time.monotonic() - started, 1e-3)
        after = cpu_seconds()
        mine = own(after) if own is not None else own_tree(after, os.getpid())
        out.update(
            cpus=os.cpu_count(),
            wall_s=round(wall, 1),
            load_average_before=[round(v, 2) for v in load_before],
            load_average_after=[round(v, 2) for v in os.getloadavg()],
            other_processes=busy_others(before, after, mine, wall),
        )
