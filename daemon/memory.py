"""Memory awareness: slow down before Ray's memory monitor has to kill a worker.

:func:`read_node_memory` reads what the node has free: ``/proc/meminfo``'s ``MemAvailable``,
or less where a cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) limits this process's
group. :class:`MemoryGuard` turns readings into the work in flight allowed now: the configured
cap while enough memory is free, one exposure while it is not (or for a while after Ray killed a
worker for memory). It says so once when memory runs low, with how much other programs use, and
notes when it is free again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from causalscope.actors._memory import resident_bytes
from causalscope.config.resilience import ResilienceSettings
from causalscope.daemon.alerts import Alert

__all__ = ["MemoryGuard", "MemoryReading", "read_node_memory", "resident_bytes"]

_GB = 1024**3
#: memory counts as free again only this far (share of the node) above the threshold, so that a
#: reading that wanders around the threshold does not slow, resume and warn again and again
RECOVERY_MARGIN = 0.05


@dataclass(frozen=True)
class MemoryReading:
    """The node's memory (bytes): its limit, and what is available to new allocations."""

    total_bytes: int
    available_bytes: int

    @property
    def free_fraction(self) -> float:
        """Share of the limit still available."""
        return self.available_bytes / self.total_bytes if self.total_bytes else 1.0

    @property
    def used_bytes(self) -> int:
        """What is in use (by every program on the node, or in this cgroup)."""
        return self.total_bytes - self.available_bytes


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_reading(root: Path) -> MemoryReading | None:
    """The tighter of a cgroup v2 or v1 limit, when one is set below the machine's memory."""
    v2_limit, v2_used = _number(root / "memory.max"), _number(root / "memory.current")
    if v2_limit is not None and v2_used is not None:
        return MemoryReading(v2_limit, max(0, v2_limit - v2_used))
    v1 = root / "memory"
    v1_limit, v1_used = _number(v1 / "memory.limit_in_bytes"), _number(v1 / "memory.usage_in_bytes")
    if v1_limit is not None and v1_used is not None and v1_limit < 2**62:
        return MemoryReading(v1_limit, max(0, v1_limit - v1_used))
    return None


def read_node_memory(
    meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")
) -> MemoryReading | None:
    """The node's memory as this process can use it; None where it cannot be read."""
    fields: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if "MemTotal" not in fields or "MemAvailable" not in fields:
        return None
    reading = MemoryReading(fields["MemTotal"], fields["MemAvailable"])
    limited = _cgroup_reading(cgroup)
    if limited is not None and limited.total_bytes < reading.total_bytes:
        return limited if limited.available_bytes < reading.available_bytes else reading
    return reading


class MemoryGuard:
    """The work in flight that memory allows now (see the module docstring).

    Parameters
    ----------
    settings
        ``processing.resilience``: the free-memory threshold, how often to read, how long to
        stay slow after an out-of-memory kill.
    alert
        Told once when memory runs low (and again only after it recovered: free memory rose
        :data:`RECOVERY_MARGIN` of the node above the threshold).
    note
        Told when memory is free again (a log line).
    reader
        Reads the node's memory (:func:`read_node_memory`).
    """

    def __init__(
        self,
        settings: ResilienceSettings,
        *,
        alert: Callable[[Alert], None],
        note: Callable[[str], None],
        reader: Callable[[], MemoryReading | None] = read_node_memory,
    ) -> None:
        self._settings = settings
        self._alert = alert
        self._note = note
        self._reader = reader
        #: below this share of free memory, one exposure at a time (changeable while running)
        self.min_free_fraction = settings.min_free_memory_fraction
        self._next_check = 0.0
        self._slow_until = 0.0
        self.low = False
        self.reading: MemoryReading | None = None

    def limit(self, configured: int, own_bytes: int = 0, now: float | None = None) -> int:
        """Work in flight allowed now: ``configured``, or 1 while memory is short.

        ``own_bytes`` is what this daemon's workers use (with this process's own memory, it
        tells the operator how much of the used memory is another program's).
        """
        now = time.monotonic() if now is None else now
        if now >= self._next_check:
            self._next_check = now + self._settings.memory_check_s
            self._check(own_bytes, now)
        return 1 if self.low else configured

    def out_of_memory(self, own_bytes: int = 0) -> None:
        """Ray killed a worker for memory: slow down now, for a while."""
        self._slow_until = time.monotonic() + self._settings.out_of_memory_slowdown_s
        self._check(own_bytes, time.monotonic())

    def describe(self, own_bytes: int = 0) -> str:
        """``"memory on this node is 95 % used (22.3 of 23.5 GB; 20.1 GB by other programs)"``."""
        reading = self.reading or self._reader()
        if reading is None:
            return "the node's memory could not be read"
        others = max(0, reading.used_bytes - own_bytes - (resident_bytes() or 0))  # not ours
        return (
            f"memory on this node is {100 * (1 - reading.free_fraction):.0f} % used "
            f"({reading.used_bytes / _GB:.1f} of {reading.total_bytes / _GB:.1f} GB; "
            f"{others / _GB:.1f} GB by other programs)"
        )

    def _check(self, own_bytes: int, now: float) -> None:
        self.reading = self._reader()
        # once low, it stays low until the margin above the threshold is free too
        threshold = self.min_free_fraction + (RECOVERY_MARGIN if self.low else 0.0)
        short = self.reading is not None and self.reading.free_fraction < threshold
        low = short or now < self._slow_until
        if low and not self.low:
            self._alert(
                Alert(
                    "memory_low",
                    "warn",
                    f"{self.describe(own_bytes)}; processing slowed to one exposure at a time",
                    "Close or move the program that uses the memory; full speed returns by "
                    "itself once enough is free (processing.resilience.min_free_memory_fraction "
                    f"= {self.min_free_fraction:g}).",
                )
            )
        elif self.low and not low:
            self._note(f"memory is free again ({self.describe(own_bytes)}); full speed resumed")
        self.low = low
