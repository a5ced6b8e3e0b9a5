"""What to do when Ray fails an exposure: the reason, the advice, retry or quarantine or pause.

:func:`classify` maps each of Ray's system failures (a worker killed by Ray's memory monitor, a
crashed worker, a lost object, a dead node, a dead or unreachable actor, Ray itself not
answering) to a :class:`Failure`: a code, a one-line reason and what the operator can do. An
exposure's own error (a ``RayTaskError``) is not a system failure: it is quarantined by the
scheduler with its message.

:class:`FailureTracker` decides per failure: the exposure goes back to the queue (its attempts
are counted in the session database, so a restart keeps them) until it has failed
``max_attempts`` times, then it is quarantined with the reason. When failures follow each other
on several exposures with none finishing in between, the fault is not the data's: new work is
paused with one message, then one exposure is tried at a time, with a pause that doubles while
it fails. The operator gets one alert per kind of failure until it has cleared: as many
exposures as pause processing (``pause_after_failures``) finished in a row without a failure.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from causalscope.config.resilience import ResilienceSettings
from causalscope.daemon.alerts import Alert

__all__ = [
    "FAILURE_CODES",
    "Failure",
    "FailureTracker",
    "PoolUnavailable",
    "classify",
    "ray_unreachable",
]

#: Every :attr:`Failure.code` that :func:`classify` and :func:`ray_unreachable` give.
FAILURE_CODES = (
    "out_of_memory",
    "worker_crashed",
    "object_lost",
    "node_died",
    "actor_died",
    "actor_unavailable",
    "ray_unreachable",
    "ray_error",
)

_MAX_PAUSE_S = 600.0
# how Ray says that an actor died with its node
_NODE_DEATH = ("node was terminated", "node has died", "node died", "node is dead")


@dataclass(frozen=True)
class Failure:
    """One kind of system failure.

    Attributes
    ----------
    code
        One of :data:`FAILURE_CODES`: ``out_of_memory``, ``worker_crashed``, ``object_lost``,
        ``node_died``, ``actor_died``, ``actor_unavailable``, ``ray_unreachable`` or
        ``ray_error``.
    title
        A short heading for the operator.
    reason
        What happened, in one line.
    advice
        What to do.
    replace_worker
        The worker is gone (or cannot be trusted): start a fresh one.
    reload
        The frames in Ray's object store are gone: read the movie again.
    """

    code: str
    title: str
    reason: str
    advice: str
    replace_worker: bool = True
    reload: bool = False


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


def classify(error: BaseException) -> Failure:
    """The :class:`Failure` for one of Ray's system errors (anything but a ``RayTaskError``)."""
    from ray import exceptions as rx

    detail = _last_line(error)
    if isinstance(error, rx.OutOfMemoryError):
        return Failure(
            "out_of_memory",
            "Worker killed: node out of memory",
            f"Ray's memory monitor killed the worker ({detail})",
            "Close or move the program that uses the memory, or lower "
            "processing.max_in_flight; processing slows to one exposure at a time meanwhile.",
        )
    if isinstance(error, rx.ObjectLostError):  # freed, evicted, owner or node gone
        return Failure(
            "object_lost",
            "Frames lost from Ray's object store",
            f"the exposure's frames were lost from Ray's object store ({type(error).__name__})",
            "Nothing to do if it is rare: the movie is read again. If it repeats, give Ray's "
            "object store more memory or check the cluster's nodes.",
            replace_worker=False,
            reload=True,
        )
    if isinstance(error, rx.NodeDiedError):
        return _node_died(detail)
    if isinstance(error, rx.WorkerCrashedError):
        return Failure(
            "worker_crashed",
            "Worker crashed",
            f"the worker process died mid-exposure ({detail})",
            "If it repeats, look for a segfault or a kill in Ray's logs (its session folder).",
        )
    if isinstance(error, rx.ActorUnavailableError):
        return Failure(
            "actor_unavailable",
            "Worker unreachable",
            f"the worker could not be reached ({detail})",
            "Check the network between the nodes; the worker is replaced.",
        )
    if isinstance(error, rx.RayActorError):  # the actor died: why, Ray says in words
        text = str(error).lower()
        if "running low on memory" in text or "memory monitor" in text:
            return Failure(
                "out_of_memory",
                "Worker killed: node out of memory",
                f"the worker was killed for memory ({detail})",
                "Close or move the program that uses the memory, or lower "
                "processing.max_in_flight; processing slows to one exposure at a time meanwhile.",
            )
        if any(words in text for words in _NODE_DEATH):
            return _node_died(detail)
        return Failure(
            "actor_died",
            "Worker crashed",
            f"the worker process died ({detail})",
            "If it repeats, look for a segfault or a kill in Ray's logs (its session folder).",
        )
    if isinstance(error, (rx.RpcError, rx.RaySystemError, rx.GetTimeoutError)):
        return ray_unreachable(detail)
    return Failure(
        "ray_error",
        "Ray failed",
        f"Ray failed the exposure: {type(error).__name__}: {detail}",
        "If it repeats, check Ray's logs (its session folder) and restart the daemon.",
    )


def _node_died(detail: str) -> Failure:
    return Failure(
        "node_died",
        "Cluster node died",
        f"the Ray node running the worker died ({detail})",
        "Check that node (power, network, memory); new workers start on the nodes left.",
        reload=True,
    )


def ray_unreachable(detail: str) -> Failure:
    """Ray itself (its control store, the GCS) does not answer."""
    return Failure(
        "ray_unreachable",
        "Ray is not answering",
        f"Ray's control store (GCS) does not answer ({detail}); the workers already running go "
        "on, but no new worker can start, and Ray ends this process if the GCS stays away "
        "(gcs_rpc_server_reconnect_timeout_s, 60 s by default)",
        "Restart Ray's head node, then `causalscope watch` on the same session: nothing is "
        "lost, every exposure not yet done is pending in the session database and resumes.",
        reload=True,
    )


Decision = Literal["retry", "quarantine"]


class FailureTracker:
    """Retry, quarantine or pause after system failures (see the module docstring).

    Parameters
    ----------
    settings
        ``processing.resilience``: attempts per exposure, failures that pause, the pause.
    alert
        Told once per kind of failure until an exposure finishes again.
    clock
        ``time.monotonic``.
    """

    def __init__(
        self,
        settings: ResilienceSettings,
        *,
        alert: Callable[[Alert], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._alert = alert
        self._clock = clock
        self._streak: deque[str] = deque(maxlen=settings.pause_after_failures)
        self._active: set[str] = set()
        self._clean = 0  # exposures finished since the last failure
        self._pause_s = settings.failure_pause_s
        self._until = 0.0
        self.halted = False  # every exposure fails: one at a time after each pause
        self._next_probe = 0.0
        self.unreachable = False  # Ray's control store does not answer
        self._probed = False  # a probe says whether Ray answers: only it clears `unreachable`

    def failed(self, exposure_id: str, attempts: int, failure: Failure) -> Decision:
        """An exposure's worker failed on its ``attempts``-th attempt: what happens to it."""
        self._streak.append(exposure_id)
        self._clean = 0
        systemic = len(self._streak) == self._streak.maxlen and len(set(self._streak)) > 1
        if systemic or self.halted:
            self.halt(failure)
            return "retry"
        decision: Decision = "quarantine" if attempts >= self._settings.max_attempts else "retry"
        if failure.code not in self._active:
            self._active.add(failure.code)
            then = (
                f"failed on attempt {attempts} of {self._settings.max_attempts} and goes back "
                "to the queue"
                if decision == "retry"
                else f"quarantined after {attempts} attempts"
            )
            self._alert(
                Alert(
                    f"ray_{failure.code}",
                    "warn",
                    f"{failure.title}: {failure.reason}; {exposure_id} is {then}",
                    failure.advice,
                    exposure_id,
                )
            )
        return decision

    def finished(self) -> None:
        """An exposure finished: failures so far were not systemic; after enough in a row,
        the failures' alerts have cleared and may be raised anew."""
        self._streak.clear()
        if not self._probed:  # without a probe, an exposure that came back is the only sign
            self.unreachable = False  # (a worker already running finishes without the GCS)
        self._clean += 1
        if self._clean >= self._settings.pause_after_failures:
            self._active.clear()
        if self.halted:
            self.halted = False
            self._pause_s = self._settings.failure_pause_s

    def unavailable(self, failure: Failure) -> None:
        """The pool could not reach Ray at all: pause new work, and say so once."""
        self.halted = True
        self._until = self._clock() + self._pause_s
        if not self.unreachable:
            self._alert(Alert(failure.code, "fail", failure.reason, failure.advice))
        self.unreachable = True

    def check_ray(self, probe: Callable[[], Failure | None] | None, interval_s: float) -> None:
        """Every ``interval_s``: ask ``probe`` whether Ray answers; say so once when it stops
        answering, and note when it answers again."""
        now = self._clock()
        if probe is None or now < self._next_probe:
            return
        self._probed = True
        self._next_probe = now + interval_s
        failure = probe()
        if failure is not None and not self.unreachable:
            self._alert(Alert(failure.code, "fail", failure.reason, failure.advice))
        elif failure is None and self.unreachable:
            self._alert(
                Alert(
                    "ray_reachable",
                    "warn",
                    "Ray's control store (GCS) answers again",
                    "Nothing to do; new workers can start again.",
                )
            )
        self.unreachable = failure is not None

    def paused(self) -> bool:
        """True while new work waits (after every exposure failed)."""
        return self.halted and self._clock() < self._until

    def halt(self, failure: Failure) -> None:
        """Pause new work after ``failure`` (every exposure failed, or Ray does not answer)."""
        first = not self.halted
        self.halted = True
        self._until = self._clock() + self._pause_s
        if first:
            self._alert(
                Alert(
                    "processing_paused",
                    "fail",
                    f"Processing paused: {len(self._streak)} exposures in a row failed and none "
                    f"finished; last: {failure.reason}. One exposure is tried every "
                    f"{self._pause_s:g} s (longer while it fails); nothing is lost",
                    failure.advice,
                )
            )
        self._pause_s = min(_MAX_PAUSE_S, 2 * self._pause_s)


class PoolUnavailable(Exception):
    """The worker pool cannot reach Ray at all (``failure`` says so for the operator)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure
