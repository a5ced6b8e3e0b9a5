"""What the scheduler talks to: its reporter and its worker pool, and its running totals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from causalscope.daemon.failures import FAILURE_CODES

if TYPE_CHECKING:
    from causalscope.actors.exposure import DetectorCalibration
    from causalscope.daemon.workers import Outcome, Task
    from causalscope.models.records import ExposureRecord

__all__ = ["Pool", "PoolFactory", "Reporter", "SchedulerCounts"]


class Reporter(Protocol):
    """Where the scheduler says what happened (the terminal, the demo, tests)."""

    def committed(self, record: ExposureRecord, latency_s: float) -> None:
        """An exposure's record is in the database."""

    def quarantined(self, exposure_id: str | None, origin: str, code: str, reason: str) -> None:
        """Input was set aside with its reason."""

    def skipped(self, exposure_id: str, state: str) -> None:
        """An exposure seen again that needs no work (done or quarantined earlier)."""

    def problem(self, title: str, message: str) -> None:
        """Something outside the data needs the operator (a full disk, a crashed worker)."""


class Pool(Protocol):
    """What the scheduler needs of a worker pool (see :class:`daemon.workers.RayWorkerPool`).

    A pool may also have ``health()`` (a :class:`daemon.workers.PoolHealth`, for the session's
    status) and ``worker_memory`` (bytes per worker, as last measured).
    """

    @property
    def in_flight(self) -> int: ...

    def submit(self, task: Task) -> int | None: ...

    def collect(self, timeout_s: float) -> list[Outcome]: ...

    def describe(self) -> str: ...

    def shutdown(self) -> None: ...


PoolFactory = Callable[["DetectorCalibration"], Pool]


@dataclass
class SchedulerCounts:
    """Running totals of this run (the store holds the session's)."""

    received: int = 0
    committed: int = 0
    quarantined: int = 0
    skipped: int = 0
    retried: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: {"pass": 0, "warn": 0, "fail": 0})
    #: Exposure attempts that Ray failed, by :attr:`~daemon.failures.Failure.code` (a worker
    #: that dies with two exposures queued fails both)
    ray_failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_CODES, 0))
