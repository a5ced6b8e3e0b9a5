"""The live session's control endpoint: what the dashboard's overview shows and the operator's
actions (pause, labels, thresholds, class labels, pictures), carried out on a running
session (:class:`daemon.live.LiveSession`).

Every action is carried out on the session's loop, one request after another, but the status
(what many clients poll: the dashboards, the HTTP API's facility view and metrics) is answered
by the endpoint's own thread from the :class:`StatusBoard`: the status the loop made last,
at most a second or so old and made again at once after every action, so that polling costs
the loop nothing and waits for no step of it.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from causalscope.daemon.workers import PoolHealth

if TYPE_CHECKING:
    from causalscope.config import Settings
    from causalscope.daemon.alerts import AlertMonitor
    from causalscope.daemon.evaluation import EvaluationTracker
    from causalscope.daemon.rates import RateWindow
    from causalscope.daemon.scheduler import Scheduler
    from causalscope.daemon.scoring import ScoreKeeper
    from causalscope.daemon.session import SessionPaths
    from causalscope.daemon.store import SessionStore

__all__ = ["ControlledSession", "StatusBoard", "act", "session_status", "worker_health"]


class ControlledSession(Protocol):
    """What the control endpoint reads and changes of a running session."""

    @property
    def settings(self) -> Settings: ...
    @property
    def paths(self) -> SessionPaths: ...
    @property
    def store(self) -> SessionStore | None: ...
    @property
    def scheduler(self) -> Scheduler | None: ...
    @property
    def alerts(self) -> AlertMonitor: ...
    @property
    def evaluation(self) -> EvaluationTracker | None: ...
    @property
    def scores(self) -> ScoreKeeper | None: ...
    @property
    def rates(self) -> RateWindow: ...
    @property
    def started_at(self) -> float: ...


def session_status(session: ControlledSession) -> dict[str, Any]:
    """What the dashboard's overview shows (published every second as ``status``)."""
    assert session.scheduler is not None and session.store is not None
    counts = session.store.counts()
    scheduler = session.scheduler
    pool = scheduler.pool
    session.rates.sample(counts["seen"], counts["done"] + counts["quarantined"])
    acquisition, processing = session.rates.per_minute()
    backlog = scheduler.queued + scheduler.in_flight
    return {
        "session": session.paths.name,
        "elapsed_s": round(time.monotonic() - session.started_at, 1),
        "seen": counts["seen"],
        "done": counts["done"],
        "pass": counts["pass"],
        "warn": counts["warn"],
        "fail": counts["fail"],
        "quarantined": counts["quarantined"],
        "queue": scheduler.queued,
        "in_flight": scheduler.in_flight,
        "workers": pool.describe() if pool is not None else "starting at the first movie",
        "devices": getattr(pool, "device_kind", "-") if pool is not None else "-",
        "paused": scheduler.paused,
        "acquisition_per_min": acquisition,
        "processing_per_min": processing,
        "keeping_up": backlog <= 2 * session.settings.processing.max_in_flight,
        "thresholds": dict(session.alerts.thresholds),
        "reconstruction": _evaluation_status(session),
        "worker_health": worker_health(scheduler),
        "picker": picker.status()
        if (picker := getattr(session, "picker_finetuner", None))
        else None,
    }


def worker_health(scheduler: Scheduler) -> dict[str, Any]:
    """The status's ``worker_health`` (:class:`~causalscope.daemon.client.wire.WorkerHealth`):
    the pool's actors (none before the first movie makes the pool) and the exposure attempts
    Ray failed in this run, by kind."""
    measure = getattr(scheduler.pool, "health", None)
    health: PoolHealth = measure() if callable(measure) else PoolHealth()
    return {
        "configured": health.configured,
        "alive": health.alive,
        "replaced_after_failure": health.replaced_after_failure,
        "recycled_for_memory": health.recycled_for_memory,
        "failures": dict(scheduler.counts.ray_failures),
        "memory_bytes": list(health.memory_bytes),
    }


def _evaluation_status(session: ControlledSession) -> dict[str, Any] | None:
    tracker = session.evaluation
    if tracker is None:
        return None
    latest = tracker.latest
    return {
        "version": latest.version if latest is not None else None,
        "particles": latest.particles if latest is not None else 0,
        "backlog": tracker.backlog,
        "update_every": tracker.threshold,
    }


def act(session: ControlledSession, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one operator action (see :mod:`daemon.control`) on ``session``."""
    assert session.scheduler is not None and session.store is not None
    action = request["action"]
    if action == "status":
        return {"status": session_status(session)}
    if action in ("pause", "resume"):
        session.scheduler.paused = action == "pause"
        session.store.log_event(action, f"processing {action}d by the operator")
        return {"paused": session.scheduler.paused}
    if action == "label":
        exposure_id, label = str(request["exposure_id"]), str(request["label"])
        session.store.add_label(exposure_id, label)
        if session.scores is not None:
            session.scores.labelled()
        return {"exposure_id": exposure_id, "label": label}
    if action == "set_threshold":
        name, value = str(request["name"]), float(request["value"])
        session.alerts.set_threshold(name, value)
        session.store.log_event("threshold", f"{name} set to {value:g}", name=name, value=value)
        return {"thresholds": dict(session.alerts.thresholds)}
    if action == "class_label":
        index, label = int(request["class_index"]), str(request["label"])
        if session.evaluation is None:
            raise ValueError("this session runs no 2D classification")
        latest = session.evaluation.latest
        class_set = latest.class_set if latest is not None else None
        if latest is None or class_set is None:
            raise ValueError(f"no class {index}: this session has no 2D classes yet")
        if not 0 <= index < class_set.n_classes:
            raise ValueError(
                f"no class {index}: the latest 2D classes (version {latest.version}) are "
                f"numbered 0 to {class_set.n_classes - 1}"
            )
        session.store.add_class_label(index, label)
        session.evaluation.relabel(index, label)
        return {"class_index": index, "label": label}
    if action == "thumbnail" and request.get("kind") == "class_gallery":
        latest = session.evaluation.latest if session.evaluation is not None else None
        if latest is None or latest.class_set is None:
            raise ValueError("this session has no 2D classes yet")
        try:
            data = Path(latest.class_set.gallery_path).read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read the class gallery: {error}") from error
        return {"png_base64": base64.b64encode(data).decode(), "version": latest.version}
    if action == "thumbnail":
        return {"png_base64": _thumbnail(session.store, request)}
    raise ValueError(f"unknown action {action!r}")


def _thumbnail(store: SessionStore, request: dict[str, Any]) -> str:
    """One exposure's picture of ``request['kind']``, base64 PNG."""
    exposure_id = str(request["exposure_id"])
    kind = str(request.get("kind", "micrograph"))
    key = {
        "micrograph": "thumbnail",
        "power_spectrum": "power_spectrum_thumbnail",
        "picks": "picks_thumbnail",
    }.get(kind)
    if key is None:
        raise ValueError(
            f"kind must be 'micrograph', 'power_spectrum', 'picks' or 'class_gallery', got {kind!r}"
        )
    row = store.exposure_row(exposure_id)
    if row is None:
        raise ValueError(f"no exposure {exposure_id!r} in this session")
    path = (row.get("outputs") or {}).get(key)
    if not path:
        raise ValueError(f"exposure {exposure_id!r} has no {kind} thumbnail")
    return base64.b64encode(Path(path).read_bytes()).decode()


class StatusBoard:
    """The session's latest status, for the control endpoint's thread to answer with.

    The session's loop calls :meth:`refresh` (each second, when it publishes the status),
    :meth:`refresh_on_change` (after each of its steps: the status is made again as soon as a
    movie arrives, an exposure is committed or quarantined, or the queue moves, so no reader
    sees a count older than the loop's last step) and :meth:`act` (for every request that
    reaches it); the endpoint's thread calls :meth:`answer_now` for each request: the status
    while it is at most ``max_age_s`` old and the session has not moved since, else None (the
    request then waits for the loop, as any other).
    """

    def __init__(self, session: ControlledSession, *, max_age_s: float = 1.5) -> None:
        self._session = session
        self.max_age_s = max_age_s
        self._latest: tuple[float, dict[str, Any]] | None = None  # replaced whole, never changed
        self._mark: tuple[Any, ...] | None = None

    def _progress(self) -> tuple[Any, ...] | None:
        """What moves the status's counts: the scheduler's totals, queue and pause."""
        scheduler = self._session.scheduler
        if scheduler is None:
            return None
        c = scheduler.counts
        return (
            c.received, c.committed, c.quarantined, c.skipped, c.retried,
            scheduler.queued, scheduler.in_flight, scheduler.paused,
        )  # fmt: skip

    def refresh(self) -> dict[str, Any]:
        """Make the status now (on the session's loop) and keep it."""
        self._mark = self._progress()
        status = session_status(self._session)
        self._latest = (time.monotonic(), status)
        return status

    def refresh_on_change(self) -> None:
        """Make the status again if the session moved since it was made (on the loop)."""
        if self._latest is not None and self._progress() != self._mark:
            self.refresh()

    def act(self, request: dict[str, Any]) -> dict[str, Any]:
        """Carry out ``request`` (on the session's loop); after an action that may change the
        status, make it again before the reply goes out, so no later read sees the old one."""
        reply = act(self._session, request)
        if request.get("action") == "status":
            self._latest = (time.monotonic(), reply["status"])
        elif request.get("action") != "thumbnail":
            self.refresh()
        return reply

    def answer_now(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The reply to a status request from the kept status (any thread), or None."""
        latest = self._latest
        if request.get("action") != "status" or latest is None:
            return None
        if time.monotonic() - latest[0] > self.max_age_s:
            return None
        # the session moved since (the counts go up before anyone hears of a commit): the
        # loop answers, with the status made then
        if self._progress() != self._mark:
            return None
        return {"status": latest[1]}
