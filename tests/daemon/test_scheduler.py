"""The scheduler's handling of storage trouble: a full disk while writing outputs, and a commit
that fails. Neither can be produced portably with a real disk, so the pool and the store fail
on cue; everything else (the store, its DuckDB file) is real."""

from __future__ import annotations

import errno
import queue
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from causalscope.config import load_settings
from causalscope.daemon.scheduler import Scheduler
from causalscope.daemon.sources.events import MovieReady, SourceEvent
from causalscope.daemon.store import SessionStore, StoreError
from causalscope.daemon.workers import Outcome, Task
from tests.daemon._recorder import Recorder
from tests.daemon.store._records import make_record


class ScriptedPool:
    """Returns each task's record at once, except that the first attempt at ``fail`` raises."""

    def __init__(self, fail: set[str], error: BaseException) -> None:
        self._fail = set(fail)
        self._error = error
        self._done: list[Outcome] = []
        self.submitted: list[str] = []

    @property
    def in_flight(self) -> int:
        return len(self._done)

    def submit(self, task: Task) -> None:
        self.submitted.append(task.exposure_id)
        if task.exposure_id in self._fail:
            self._fail.discard(task.exposure_id)
            self._done.append(Outcome(task, error=self._error))
        else:
            self._done.append(Outcome(task, record=make_record(task.exposure_id)))

    def collect(self, timeout_s: float) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def describe(self) -> str:
        return "scripted"

    def shutdown(self) -> None:
        pass


def _events(ids: list[str]) -> queue.Queue[SourceEvent]:
    events: queue.Queue[SourceEvent] = queue.Queue()
    for exposure_id in ids:
        frames = np.zeros((2, 8, 8), dtype=np.uint8)
        events.put(MovieReady(exposure_id, Path(f"{exposure_id}.mrc"), "stream", frames=frames))
    return events


def _run(scheduler: Scheduler, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        scheduler.step(0.05)
        if scheduler.idle:
            return
    raise AssertionError("the scheduler did not finish")


def test_a_full_disk_pauses_with_a_clear_message_and_loses_nothing(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/session/micrographs/b.mrc")
    pool = ScriptedPool({"b"}, full)
    reporter = Recorder()
    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        scheduler = Scheduler(
            load_settings(),
            store,
            lambda calibration: pool,
            _events(["a", "b", "c"]),
            params_hash="h",
            reporter=reporter,
            retry_after_s=0.2,
        )
        _run(scheduler)
        assert store.counts()["done"] == 3
    title, message = reporter.problems[0]
    assert title == "Output disk full"
    assert "No space left on device" in message and "micrographs/b.mrc" in message
    assert "no exposure is lost" in message
    assert sorted(pool.submitted) == ["a", "b", "b", "c"]  # b retried once, nothing else twice
    assert sorted(e for e, _ in reporter.commits) == ["a", "b", "c"]


class FailingStore(SessionStore):
    """Fails the first commit of ``exposure_id`` as DuckDB does when the disk is full."""

    def __init__(self, *args: Any, fail: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fail: str | None = fail

    def commit_exposure(self, record: Any, **kwargs: Any) -> bool:
        if record.exposure_id == self._fail:
            self._fail = None
            raise StoreError("Cannot write the session database", f"{self.path}: disk full")
        return super().commit_exposure(record, **kwargs)


def test_a_failed_commit_is_kept_and_retried(tmp_path: Path) -> None:
    pool = ScriptedPool(set(), OSError())
    reporter = Recorder()
    path = tmp_path / "s.duckdb"
    with FailingStore(path, fail="b") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        scheduler = Scheduler(
            load_settings(),
            store,
            lambda calibration: pool,
            _events(["a", "b", "c"]),
            params_hash="h",
            reporter=reporter,
            retry_after_s=0.2,
        )
        _run(scheduler)
    assert [title for title, _ in reporter.problems] == ["Cannot write the session database"]
    assert "nothing is lost" in reporter.problems[0][1]
    assert sorted(pool.submitted) == ["a", "b", "c"]  # the record was kept, not recomputed
    with duckdb.connect(str(path), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (3,)
