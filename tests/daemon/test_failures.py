"""Staying up without Ray's help: the memory probe, work in flight under memory pressure, and
what happens to an exposure whose worker keeps failing (retry, quarantine, pause).

The store (a DuckDB file), the memory readings (``/proc`` and cgroup files) and the scheduler
are real; the pool fails on cue with the failure a real Ray error maps to (the Ray errors
themselves are produced for real in ``test_ray_failures.py``).
"""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import duckdb
import numpy as np

from causalscope.config import load_settings
from causalscope.daemon.alerts import Alert
from causalscope.daemon.failures import FAILURE_CODES, Failure, PoolUnavailable, ray_unreachable
from causalscope.daemon.memory import MemoryReading, read_node_memory
from causalscope.daemon.scheduler import Scheduler
from causalscope.daemon.sources.events import MovieReady, SourceEvent
from causalscope.daemon.store import SessionStore
from causalscope.daemon.workers import Outcome, Task
from tests.daemon._recorder import Recorder
from tests.daemon.store._records import make_record

OOM = Failure("out_of_memory", "Worker killed: node out of memory", "killed", "free memory")
ACTOR_DIED = Failure("actor_died", "Worker crashed", "the worker process died", "read the logs")
LOST = Failure(
    "object_lost", "Frames lost", "lost", "nothing to do", replace_worker=False, reload=True
)
NO_FAILURES = dict.fromkeys(FAILURE_CODES, 0)


class HoldingPool:
    """Keeps each task in flight for ``hold`` collects, then returns its record (or fails it
    with ``failure`` while its exposure is in ``failing``); remembers the most in flight."""

    def __init__(self, *, hold: int = 2, failing: set[str] | None = None) -> None:
        self._hold = hold
        self.failing = failing if failing is not None else set()
        self._tasks: list[list[object]] = []
        self.submitted: list[str] = []
        self.most_in_flight = 0

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, task: Task) -> None:
        self.submitted.append(task.exposure_id)
        self._tasks.append([task, self._hold])
        self.most_in_flight = max(self.most_in_flight, len(self._tasks))

    def collect(self, timeout_s: float) -> list[Outcome]:
        out = []
        for entry in list(self._tasks):
            entry[1] = int(entry[1]) - 1  # type: ignore[call-overload]
            if int(entry[1]) > 0:  # type: ignore[call-overload]
                continue
            self._tasks.remove(entry)
            task = entry[0]
            assert isinstance(task, Task)
            if task.exposure_id in self.failing or "*" in self.failing:
                out.append(Outcome(task, error=RuntimeError("killed"), crashed=True, failure=OOM))
            else:
                out.append(Outcome(task, record=make_record(task.exposure_id)))
        return out

    def describe(self) -> str:
        return "holding"

    def shutdown(self) -> None:
        pass


class ScriptedPool(HoldingPool):
    """Fails an exposure's attempts with the failures ``script`` lists for it, in order, then
    returns its record."""

    def __init__(self, script: dict[str, list[Failure]]) -> None:
        super().__init__(hold=1)
        self.script = script

    def collect(self, timeout_s: float) -> list[Outcome]:
        out = []
        for outcome in super().collect(timeout_s):
            planned = self.script.get(outcome.task.exposure_id)
            if planned:
                failure = planned.pop(0)
                error = RuntimeError(failure.reason)
                outcome = Outcome(outcome.task, error=error, crashed=True, failure=failure)
            out.append(outcome)
        return out


def _events(
    ids: list[str], events: queue.Queue[SourceEvent] | None = None
) -> queue.Queue[SourceEvent]:
    events = events if events is not None else queue.Queue()
    for exposure_id in ids:
        frames = np.zeros((2, 8, 8), dtype=np.uint8)
        events.put(MovieReady(exposure_id, Path(f"{exposure_id}.mrc"), "stream", frames=frames))
    return events


def _scheduler(
    store: SessionStore,
    pool: HoldingPool,
    events: queue.Queue[SourceEvent],
    alerts: list[Alert],
    **resilience: object,
) -> Scheduler:
    settings = load_settings(
        overrides={"processing": {"max_in_flight": 3, "resilience": resilience}}
    )
    return Scheduler(
        settings,
        store,
        lambda calibration: pool,
        events,
        params_hash="h",
        reporter=Recorder(),
        alert=alerts.append,
    )


def _run(scheduler: Scheduler, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        scheduler.step(0.01)
        if scheduler.idle:
            return
    raise AssertionError("the scheduler did not finish")


def test_the_node_memory_reading_is_the_kernels() -> None:
    reading = read_node_memory()
    assert reading is not None
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert int(meminfo["MemTotal"].split()[0]) * 1024 == physical  # the identity it relies on
    assert reading.total_bytes <= physical
    assert 0 < reading.available_bytes <= reading.total_bytes
    assert reading.used_bytes == reading.total_bytes - reading.available_bytes


def test_a_cgroup_limit_below_the_machine_is_what_counts(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text(f"{2**30}\n")
    (v2 / "memory.current").write_text(f"{3 * 2**28}\n")
    assert read_node_memory(cgroup=v2) == MemoryReading(2**30, 2**28)
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{2**31}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{2**30}\n")
    assert read_node_memory(cgroup=v1.parent) == MemoryReading(2**31, 2**30)
    (v2 / "memory.max").write_text("max\n")  # no limit: the machine's memory
    unlimited = read_node_memory(cgroup=v2)
    assert unlimited is not None and unlimited.total_bytes > 2**30


def test_short_memory_drops_work_in_flight_to_one_and_full_speed_returns(tmp_path: Path) -> None:
    reading = read_node_memory()
    assert reading is not None
    pool = HoldingPool(hold=3)
    alerts: list[Alert] = []
    ids = [f"e{i}" for i in range(6)]
    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        # the real free memory is below a threshold set well above what is free now (other
        # tests running beside this one free gigabytes as they end: 5 % above was not enough)
        threshold = min(0.999, reading.free_fraction + 0.3)
        events = _events(ids)
        scheduler = _scheduler(
            store, pool, events, alerts, min_free_memory_fraction=threshold, memory_check_s=0.01
        )
        _run(scheduler)
        assert pool.most_in_flight == 1
        assert store.counts()["done"] == 6
        [low] = alerts  # once, although every check found memory short
        assert low.code == "memory_low"
        assert "% used" in low.message and "by other programs" in low.message
        assert "one exposure at a time" in low.message
        scheduler.memory.min_free_fraction = 0.0  # memory is free again
        _events([f"f{i}" for i in range(6)], events)
        pool.most_in_flight = 0
        _run(scheduler)
        assert pool.most_in_flight == 3  # processing.max_in_flight again
        assert len(alerts) == 1
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as db:
        notes = db.execute("SELECT message FROM events WHERE kind = 'memory'").fetchall()
    assert len(notes) == 1 and "free again" in notes[0][0]


def test_memory_that_wanders_around_the_threshold_warns_once() -> None:
    """Free memory read at 19, 21, 19, 22, 24.5 and 26 % of the node against a 20 % threshold:
    slow from the first reading, one alert, and full speed only once 25 % (the threshold and
    the 5 % recovery margin) is free."""
    from causalscope.config.resilience import ResilienceSettings
    from causalscope.daemon.memory import RECOVERY_MARGIN, MemoryGuard

    total = 100 * 2**30
    free = iter([19, 21, 19, 22, 24.5, 26])
    alerts: list[Alert] = []
    notes: list[str] = []
    guard = MemoryGuard(
        ResilienceSettings(min_free_memory_fraction=0.2, memory_check_s=0.5),
        alert=alerts.append,
        note=notes.append,
        reader=lambda: MemoryReading(total, int(next(free) / 100 * total)),
    )
    assert RECOVERY_MARGIN == 0.05
    limits = [guard.limit(3, now=float(t)) for t in range(6)]
    assert limits == [1, 1, 1, 1, 1, 3]
    assert [a.code for a in alerts] == ["memory_low"]
    assert len(notes) == 1 and "free again" in notes[0]


def test_an_exposure_that_keeps_failing_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    pool = HoldingPool(hold=1, failing={"b"})
    alerts: list[Alert] = []
    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        store.record_seen("b", movie_path="b.mrc", source="stream")
        store.mark_attempt("b")  # a previous run's attempt: the count survives the restart
        scheduler = _scheduler(
            store,
            pool,
            _events(["a", "b", "c"]),
            alerts,
            max_attempts=3,
            out_of_memory_slowdown_s=0,
        )
        _run(scheduler)
        counts = store.counts()
    assert counts["done"] == 2 and counts["quarantined"] == 1
    assert pool.submitted.count("b") == 2  # attempts 2 and 3 in this run, 1 before
    # the failures of this run: the previous run's attempt is not counted again
    assert scheduler.counts.ray_failures == {**NO_FAILURES, "out_of_memory": 2}
    ray_alerts = [a for a in alerts if a.code.startswith("ray_")]
    assert [a.code for a in ray_alerts] == ["ray_out_of_memory"]  # one alert, not one per try
    assert "Worker killed" in ray_alerts[0].message and ray_alerts[0].advice == "free memory"
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as db:
        code, reason = db.execute(
            "SELECT code, reason FROM quarantine WHERE exposure_id = 'b'"
        ).fetchone()  # type: ignore[misc]
        attempts = db.execute("SELECT attempts FROM exposures WHERE exposure_id = 'b'").fetchone()
    assert code == "out_of_memory"
    assert "b.mrc" in reason and "3 attempts" in reason and "killed" in reason
    assert attempts == (3,)


def test_ray_failures_are_counted_by_kind(tmp_path: Path) -> None:
    pool = ScriptedPool({"a": [OOM, ACTOR_DIED], "b": [LOST], "c": [ACTOR_DIED]})
    alerts: list[Alert] = []
    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        events = _events(["a", "b", "c", "d"])
        # four failures in a row would pause processing for 30 s when none of the exposures
        # happens to finish in between (an order a loaded machine can give): not what this
        # test is about
        scheduler = _scheduler(
            store, pool, events, alerts, max_attempts=3, out_of_memory_slowdown_s=0,
            pause_after_failures=10,
        )  # fmt: skip
        _run(scheduler)
        assert store.counts()["done"] == 4  # each finished on a later attempt
    assert sorted(pool.submitted) == ["a", "a", "a", "b", "b", "c", "c", "d"]
    assert scheduler.counts.ray_failures == {
        **NO_FAILURES,
        "out_of_memory": 1,
        "actor_died": 2,
        "object_lost": 1,
    }
    assert scheduler.counts.retried == 4


def test_an_exposure_interrupted_on_every_attempt_is_quarantined_not_tried_again(
    tmp_path: Path,
) -> None:
    """The daemon stopped while it ran, as many times as attempts are allowed: set it aside
    (it may be what brings the daemon down) instead of a fourth and fifth attempt."""
    pool = HoldingPool(hold=1)
    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        store.record_seen("b", movie_path="b.mrc", source="stream")
        for _ in range(3):  # three runs each ended (kill -9) while "b" was in flight
            store.mark_attempt("b")
        scheduler = _scheduler(store, pool, _events(["a", "b"]), [], max_attempts=3)
        _run(scheduler)
        counts = store.counts()
    assert pool.submitted == ["a"]
    assert counts["done"] == 1 and counts["quarantined"] == 1
    with duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True) as db:
        code, reason = db.execute(
            "SELECT code, reason FROM quarantine WHERE exposure_id = 'b'"
        ).fetchone()  # type: ignore[misc]
    assert code == "interrupted"
    assert "b.mrc" in reason and "3 attempts ended without a result" in reason


def test_when_every_exposure_fails_processing_pauses_instead_of_spinning(tmp_path: Path) -> None:
    pool = HoldingPool(hold=1, failing={"*"})
    alerts: list[Alert] = []
    ids = [f"e{i}" for i in range(5)]
    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        scheduler = _scheduler(
            store,
            pool,
            _events(ids),
            alerts,
            pause_after_failures=3,
            failure_pause_s=0.4,
            out_of_memory_slowdown_s=0,
        )
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            scheduler.step(0.01)
        submitted = len(pool.submitted)
        assert scheduler.failures.halted
        assert store.counts()["quarantined"] == 0  # the fault is not the data's
        paused = [a for a in alerts if a.code == "processing_paused"]
        assert len(paused) == 1 and "none finished" in paused[0].message
        # 3 failures, then one try after 0.4 s, 0.8 s (and not more within 2 s)
        assert 4 <= submitted <= 6
        pool.failing.clear()  # the cause went away
        _run(scheduler, seconds=10.0)
        assert not scheduler.failures.halted
        assert store.counts()["done"] == 5


class UnreachablePool(HoldingPool):
    """A pool that cannot reach Ray (its ``collect`` says so) until ``down`` is cleared."""

    def __init__(self) -> None:
        super().__init__(hold=1)
        self.down = True

    def collect(self, timeout_s: float) -> list[Outcome]:
        if self.down:
            raise PoolUnavailable(ray_unreachable("Timed out while waiting for GCS"))
        return super().collect(timeout_s)


def test_a_pool_that_cannot_reach_ray_pauses_with_one_alert_and_loses_nothing(
    tmp_path: Path,
) -> None:
    pool = UnreachablePool()
    alerts: list[Alert] = []
    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        scheduler = _scheduler(store, pool, _events(["a", "b"]), alerts, failure_pause_s=0.2)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            scheduler.step(0.01)
        assert [a.code for a in alerts] == ["ray_unreachable"]
        assert "GCS" in alerts[0].message and "nothing is" in alerts[0].advice
        assert store.counts()["done"] == 0
        pool.down = False
        _run(scheduler)
        assert store.counts()["done"] == 2
        assert not scheduler.failures.halted and not scheduler.failures.unreachable
    # Ray not answering failed no exposure
    assert scheduler.counts.ray_failures == NO_FAILURES


def test_an_exposure_finishing_while_the_gcs_is_away_does_not_repeat_the_alert() -> None:
    """A worker already running finishes without the GCS: only the probe says Ray is back."""
    from causalscope.config.resilience import ResilienceSettings
    from causalscope.daemon.failures import FailureTracker

    now = [0.0]
    alerts: list[Alert] = []
    tracker = FailureTracker(ResilienceSettings(), alert=alerts.append, clock=lambda: now[0])
    answer: list[Failure | None] = [ray_unreachable("Timed out while waiting for GCS")]
    for _ in range(4):  # a probe every second, an exposure finishing between them
        tracker.check_ray(lambda: answer[0], interval_s=1.0)
        tracker.finished()
        now[0] += 1.0
    assert [a.code for a in alerts] == ["ray_unreachable"]
    answer[0] = None
    tracker.check_ray(lambda: answer[0], interval_s=1.0)
    assert [a.code for a in alerts] == ["ray_unreachable", "ray_reachable"]
    assert not tracker.unreachable
