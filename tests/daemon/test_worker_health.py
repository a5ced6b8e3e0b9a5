"""A running session's worker health: the scheduler's and the pool's counts in the session's
status (``worker_health``) and the same numbers on ``/metrics``; a finished session has none of
them, and a session whose pool starts at the first movie has no worker alive yet.

The scheduler, the store and the status are real; the pool fails on cue with the failures a
real Ray error maps to (as in ``test_failures.py``) and reports the health a Ray pool would.
The Ray pool's own numbers, with a worker killed for real, are checked in ``test_live.py``.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from causalscope.config import load_settings
from causalscope.daemon.alerts import AlertMonitor
from causalscope.daemon.client import wire as w
from causalscope.daemon.failures import FAILURE_CODES, Failure
from causalscope.daemon.live_control import session_status
from causalscope.daemon.rates import RateWindow
from causalscope.daemon.scheduler import Scheduler
from causalscope.daemon.serve.metrics import LATENCY_BUCKETS_S, SessionsCollector
from causalscope.daemon.serve.sessions import SessionRef
from causalscope.daemon.store import SessionStore
from causalscope.daemon.workers import PoolHealth
from tests.daemon.test_failures import (
    ACTOR_DIED,
    NO_FAILURES,
    OOM,
    ScriptedPool,
    _events,
    _run,
    _scheduler,
)

GIB = 2**30
# what the pool says of its actors: 2 kept, both alive, 3 replaced after failures, 1 recycled;
# slot 1 not measured yet
HEALTH = PoolHealth(
    configured=2,
    alive=2,
    replaced_after_failure=3,
    recycled_for_memory=1,
    memory_bytes=(3 * GIB, None),
)
NOT_STARTED = {
    "configured": 0,
    "alive": 0,
    "replaced_after_failure": 0,
    "recycled_for_memory": 0,
    "failures": NO_FAILURES,
    "memory_bytes": [],
}


class ReportingPool(ScriptedPool):
    """A scripted pool that reports its actors as a Ray pool does."""

    def __init__(self, script: dict[str, list[Failure]], health: PoolHealth) -> None:
        super().__init__(script)
        self._health = health

    def health(self) -> PoolHealth:
        return self._health

    def describe(self) -> str:
        return "2 CPU actor(s), 1 thread(s) each"


def _controlled(store: SessionStore, scheduler: Scheduler) -> Any:
    """What the control endpoint reads of a running session (no Ray, no sources)."""
    return SimpleNamespace(
        settings=load_settings(),
        paths=SimpleNamespace(name="live"),
        store=store,
        scheduler=scheduler,
        alerts=AlertMonitor(),
        evaluation=None,
        scores=None,
        rates=RateWindow(),
        started_at=time.monotonic(),
    )


def _statuses(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The session's status before its pool started, and after four exposures whose attempts
    Ray failed three times (an actor died once, the node ran out of memory twice)."""
    pool = ReportingPool({"a": [ACTOR_DIED], "b": [OOM, OOM]}, HEALTH)
    with SessionStore(tmp_path / "live.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        events = _events(["a", "b", "c", "d"])
        scheduler = _scheduler(store, pool, events, [], out_of_memory_slowdown_s=0)
        session = _controlled(store, scheduler)
        before = session_status(session)
        _run(scheduler)
        after = session_status(session)
        assert store.counts()["done"] == 4
    return before, after


def test_the_status_reports_the_workers_before_and_after_the_pool_starts(tmp_path: Path) -> None:
    before, after = _statuses(tmp_path)
    assert before["workers"] == "starting at the first movie"
    assert before["worker_health"] == NOT_STARTED
    assert after["worker_health"] == {
        "configured": 2,
        "alive": 2,
        "replaced_after_failure": 3,
        "recycled_for_memory": 1,
        "failures": {**NO_FAILURES, "actor_died": 1, "out_of_memory": 2},
        "memory_bytes": [3 * GIB, None],
    }
    # the wire model: every field it declares (bar a finished session's flag), no more
    declared = {f.alias or name for name, f in w.Status.model_fields.items()}
    health_fields = set(w.WorkerHealth.model_fields)
    for status in (before, after):
        assert set(status) == declared - {"finished"}
        parsed = w.Status.model_validate(status)
        assert parsed.worker_health is not None
        assert set(status["worker_health"]) == health_fields


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_show_the_workers_of_running_sessions_only(tmp_path: Path) -> None:
    before, after = _statuses(tmp_path / "run")
    older = {k: v for k, v in after.items() if k != "worker_health"}  # an older daemon's
    older["workers"] = "3 GPU actor(s)"
    statuses: dict[str, dict[str, Any] | None] = {
        "live": after,
        "starting": before,
        "older": older,
        "done": None,
    }
    folder = tmp_path / "sessions"
    folder.mkdir()
    for name in statuses:
        (folder / f"{name}.duckdb").touch()

    def read(ref: SessionRef) -> dict[str, Any]:
        status = statuses[ref.name]
        counts = [0.0] * (6 + 2 + len(LATENCY_BUCKETS_S) + 1)
        return {"live": status is not None, "counts": counts, "resolution": None, "status": status}

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SessionsCollector(folder, read=read))
    text = generate_latest(registry).decode()
    samples = _samples(text)
    types = {f.name: f.type for f in text_string_to_metric_families(text)}

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert types["causalscope_worker_failures"] == "counter"
    assert types["causalscope_worker_replacements"] == "counter"
    assert types["causalscope_workers_alive"] == types["causalscope_worker_memory_bytes"] == "gauge"
    # the running session: the pool's numbers and the scheduler's count of each kind
    assert value("causalscope_workers", session="live") == 2  # from the text, as before
    assert value("causalscope_workers_alive", session="live") == 2
    replaced = "causalscope_worker_replacements_total"
    assert value(replaced, session="live", reason="failure") == 3
    assert value(replaced, session="live", reason="memory") == 1
    failed = "causalscope_worker_failures_total"
    by_kind = {
        dict(labels)["kind"]: v
        for (name, labels), v in samples.items()
        if name == failed and dict(labels)["session"] == "live"
    }
    assert by_kind == {**dict.fromkeys(FAILURE_CODES, 0.0), "actor_died": 1, "out_of_memory": 2}
    memory = "causalscope_worker_memory_bytes"
    assert value(memory, session="live", slot="0") == 3 * GIB
    assert value(memory, session="live", slot="1") is None  # not measured yet
    # the pool not made yet: nothing alive, nothing replaced or failed, nothing measured
    assert value("causalscope_workers", session="starting") == 0
    assert value("causalscope_workers_alive", session="starting") == 0
    assert value(replaced, session="starting", reason="failure") == 0
    assert value(failed, session="starting", kind="actor_died") == 0
    assert not [key for key in samples if key[0] == memory and ("session", "starting") in key[1]]
    # an older daemon's status: its workers' count as before, and no health
    assert value("causalscope_workers", session="older") == 3
    # a finished session: read, but none of a running session's numbers
    assert value("causalscope_session_live", session="done") == 0
    health_families = {"causalscope_workers_alive", replaced, failed, memory}
    sessions = {dict(labels)["session"] for name, labels in samples if name in health_families}
    assert sessions == {"live", "starting"}
