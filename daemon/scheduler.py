"""The scheduler: from source events to committed records, exactly once.

Every event is recorded in the store before anything else happens to it (``record_seen``), so
a crash at any point leaves the exposure either done or pending, never lost; a restart skips
what is done and processes what is pending. Movies are read on a few loader threads, handed to
the worker pool with a cap on work in flight, and each record is committed by the store, the
only writer of the session database. Nothing here blocks on one exposure:

- a movie that cannot be read, or whose frames cannot be processed at all, is quarantined with
  its reason and the session goes on;
- when Ray fails an exposure (a worker killed for memory or crashed, a lost object, a dead
  node or actor, Ray not answering) the worker is replaced and the exposure goes back to the
  queue, with its attempts counted in the store; the operator gets one alert with the reason and
  the advice; an exposure that keeps failing is quarantined, and when every exposure fails new
  work pauses (:mod:`daemon.failures`);
- memory: work in flight drops to one exposure while the node's memory is short
  (:mod:`daemon.memory`);
- a full disk (writing micrographs or committing) pauses new work with a clear message and
  retries; records waiting to be committed stay in memory and their exposures stay pending in
  the database, so neither a retry nor a restart loses one.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from causalscope.daemon._scheduling import Pool, PoolFactory, Reporter, SchedulerCounts
from causalscope.daemon.calibration import GainChoice
from causalscope.daemon.failures import Failure, FailureTracker, PoolUnavailable
from causalscope.daemon.loading import Loaded, load_event
from causalscope.daemon.memory import MemoryGuard
from causalscope.daemon.pause import StoragePause
from causalscope.daemon.sources.events import GainFound, MovieReady, Rejected, SourceEvent
from causalscope.models.errors import CausalscopeError

if TYPE_CHECKING:
    from causalscope.config import Settings
    from causalscope.daemon.alerts import Alert
    from causalscope.daemon.store import SessionStore
    from causalscope.daemon.workers import Outcome, Task
    from causalscope.models.records import ExposureRecord

__all__ = ["Pool", "PoolFactory", "Reporter", "Scheduler", "SchedulerCounts"]

log = logging.getLogger(__name__)

_RAY_CHECK_S = 5.0  # how often to ask whether Ray's control store answers


class Scheduler:
    """Turns source events into committed records (see the module docstring).

    Parameters
    ----------
    settings
        Resolved settings (``processing.max_in_flight`` caps work in flight).
    store
        The session store.
    pool_factory
        Makes the worker pool from the detector calibration, once the first movie shows the
        frames' size (EER rendering and the gain's orientation depend on it).
    events
        The queue both sources feed.
    params_hash
        The processing parameters' identity (:func:`daemon.session.params_hash`).
    reporter
        Told of every commit, quarantine and problem.
    retry_after_s
        Pause before retrying after a storage error (a full disk).
    alert
        Told of warnings for the operator (a gain reference in the watched folder that is not
        used, and why); default: the reporter's ``problem``.
    hold_calibration
        True while a source may still hand over a gain reference (the watcher's
        ``gain_pending``): the pool, and with it the session's calibration, waits (not when
        ``detector.gain_reference`` is set).
    """

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        pool_factory: PoolFactory,
        events: queue.Queue[SourceEvent],
        *,
        params_hash: str,
        reporter: Reporter,
        retry_after_s: float = 10.0,
        loader_threads: int = 2,
        alert: Callable[[Alert], None] | None = None,
        hold_calibration: Callable[[], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._pool_factory = pool_factory
        self._pool: Pool | None = None
        self._events = events
        self._params_hash = params_hash
        self._reporter = reporter
        self._loader = ThreadPoolExecutor(loader_threads, thread_name_prefix="causalscope-load")
        self._unrecorded: deque[SourceEvent] = deque()
        self._waiting: deque[MovieReady] = deque()
        self._loading: dict[Future[Loaded], MovieReady] = {}
        self._ready: deque[tuple[MovieReady, Loaded]] = deque()
        self._retry: deque[Task] = deque()
        self._uncommitted: deque[tuple[ExposureRecord, float, tuple[str, ...]]] = deque()
        self._known: set[str] = set()
        self._pause = StoragePause(retry_after_s, reporter)
        self._alert = alert
        # a configured gain is never replaced by a found one: nothing to wait for then
        configured = settings.detector.gain_reference is not None
        self._hold_calibration = None if configured else hold_calibration
        self._gain = GainChoice(settings, alert=self._raise_alert, note=self._note)
        resilience = settings.processing.resilience
        self.failures = FailureTracker(resilience, alert=self._raise_alert)
        self.memory = MemoryGuard(
            resilience, alert=self._raise_alert, note=lambda text: self._note(text, "memory")
        )
        self.paused = False
        self.counts = SchedulerCounts()

    # --- public --------------------------------------------------------------------------------

    @property
    def pool(self) -> Pool | None:
        """The worker pool, once the first movie has made it."""
        return self._pool

    @property
    def queued(self) -> int:
        """Exposures recorded and waiting to be read or processed."""
        return len(self._waiting) + len(self._loading) + len(self._ready) + len(self._retry)

    @property
    def in_flight(self) -> int:
        """Exposures with the actors now."""
        return self._pool.in_flight if self._pool is not None else 0

    @property
    def idle(self) -> bool:
        """Nothing queued, in flight or waiting to be committed."""
        return (
            self._events.empty()
            and not self._unrecorded
            and self.queued == 0
            and self.in_flight == 0
            and not self._uncommitted
        )

    def resume_pending(self) -> int:
        """Queue the exposures a previous run recorded but did not finish; returns how many."""
        pending = self._store.pending()
        for item in pending:
            self._events.put(
                MovieReady(
                    exposure_id=item.exposure_id,
                    movie_path=Path(item.movie_path),
                    source=item.source,  # type: ignore[arg-type]
                    metadata_path=item.metadata_path,
                )
            )
        return len(pending)

    def step(self, timeout_s: float = 0.2) -> None:
        """One round: record new events, read movies, hand them out, commit what came back."""
        blocked = self._pause.active(time.monotonic())
        # asked before recording: a gain the source queued before it said "done" is recorded
        hold = self._calibration_held()
        if not blocked:
            self._retry_commits()
            self._record_events()
        self.failures.check_ray(getattr(self._pool, "check_ray", None), _RAY_CHECK_S)
        go = not blocked and not self.paused and not self.failures.paused()
        if go:
            self._start_loads()
        self._finish_loads()
        if go:
            self._submit_ready(hold)
        if self._pool is not None and self._pool.in_flight:
            try:
                outcomes = self._pool.collect(timeout_s)
            except PoolUnavailable as error:  # Ray itself: wait, keep everything, say so once
                self.failures.unavailable(error.failure)
                return
            for outcome in outcomes:
                self._handle(outcome)
        else:
            time.sleep(timeout_s if self.idle or blocked or hold else 0.01)

    def _calibration_held(self) -> bool:
        """Whether making the pool waits (a source may still hand over a gain reference)."""
        return (
            self._pool is None and self._hold_calibration is not None and self._hold_calibration()
        )

    def close(self) -> None:
        """Stop loader threads and actors. Uncommitted work stays pending in the store."""
        self._loader.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown()

    # --- recording -----------------------------------------------------------------------------

    def _record_events(self) -> None:
        while True:
            if self._unrecorded:
                event = self._unrecorded.popleft()
            else:
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    return
            try:
                self._record(event)
            except CausalscopeError as error:  # the store could not write: keep it, retry later
                self._unrecorded.appendleft(event)
                self._pause.store_failed(error)
                return

    def _record(self, event: SourceEvent) -> None:
        if isinstance(event, GainFound):
            self._gain.offer(event.path)
            return
        if isinstance(event, Rejected):
            self._store.quarantine(
                exposure_id=event.exposure_id,
                origin=event.origin,
                code=event.code,
                reason=event.reason,
            )
            self.counts.quarantined += 1
            self._reporter.quarantined(event.exposure_id, event.origin, event.code, event.reason)
            return
        if event.exposure_id in self._known:
            return  # already queued in this run (a restart's pending list and a rescan)
        state = self._store.record_seen(
            event.exposure_id,
            movie_path=str(event.movie_path),
            source=event.source,
            metadata_path=str(event.metadata_path) if event.metadata_path else None,
        )
        if state == "conflict":
            reason = (
                f"{event.movie_path}: exposure id {event.exposure_id!r} already belongs to "
                "another movie in this session; rename one of them"
            )
            self._store.quarantine(
                exposure_id=None, origin=str(event.movie_path), code="duplicate_id", reason=reason
            )
            self.counts.quarantined += 1
            self._reporter.quarantined(None, str(event.movie_path), "duplicate_id", reason)
            return
        if state in ("done", "quarantined"):
            self.counts.skipped += 1
            self._reporter.skipped(event.exposure_id, state)
            return
        if state == "pending" and self._store.is_done(
            event.exposure_id, params_hash=self._params_hash
        ):
            self.counts.skipped += 1
            self._reporter.skipped(event.exposure_id, "done")
            return
        self.counts.received += 1
        self._known.add(event.exposure_id)
        self._waiting.append(event)

    # --- reading -------------------------------------------------------------------------------

    def _capacity(self, *, retries: bool = True) -> int:
        """Exposures that may start now; retries waiting count as started (they go first)."""
        busy = len(self._loading) + len(self._ready) + self.in_flight
        busy += len(self._retry) if retries else 0
        limit = self.memory.limit(self._settings.processing.max_in_flight, self._own_memory())
        return (1 if self.failures.halted else limit) - busy

    def _own_memory(self) -> int:
        """Bytes the pool's workers use, as last measured (0 before any)."""
        return sum(getattr(self._pool, "worker_memory", ()) or ())

    def _start_loads(self) -> None:
        while self._waiting and self._capacity() > 0:
            event = self._waiting.popleft()
            future = self._loader.submit(load_event, event, self._settings)
            self._loading[future] = event

    def _finish_loads(self) -> None:
        for future in [f for f in self._loading if f.done()]:
            event = self._loading.pop(future)
            try:
                loaded = future.result()
            except CausalscopeError as error:
                self._quarantine(event, "unreadable_movie", error.message)
                continue
            except (OSError, ValueError, KeyError, TypeError) as error:
                self._quarantine(event, "unreadable_movie", f"{event.movie_path}: {error}")
                continue
            self._ready.append((event, loaded))

    def _ensure_pool(self, loaded: Loaded) -> Pool:
        if self._pool is None:
            h, w = (int(n) for n in loaded.frames.shape[-2:])
            self._pool = self._pool_factory(self._gain.calibration((h, w), loaded.upsampling))
        return self._pool

    def _submit_ready(self, hold: bool = False) -> None:
        from causalscope.daemon.workers import Task

        while self._retry and self._capacity(retries=False) > 0:
            task = self._retry[0]
            attempts = self._count_attempt(task.exposure_id)
            if attempts is None:
                return
            if self._interrupted_too_often(task.context, attempts):
                self._retry.popleft()
                continue
            if not self._submit(task, attempts):
                return
            self._retry.popleft()
        while self._ready and not (hold and self._pool is None):
            event, loaded = self._ready.popleft()
            try:
                self._ensure_pool(loaded)
            except CausalscopeError as error:
                # the configured gain or defects cannot serve this movie's frames; other movies
                # (the usual size) may still be fine, so the session goes on
                self._quarantine(event, "calibration_mismatch", error.message)
                continue
            task = Task(
                exposure_id=event.exposure_id,
                movie_path=str(event.movie_path),
                frames=loaded.frames,
                metadata=loaded.metadata,
                pixel_size_angstrom=loaded.pixel_size_angstrom,
                context=event,
            )
            attempts = self._count_attempt(task.exposure_id)
            if attempts is None:
                self._ready.appendleft((event, loaded))
                return
            if self._interrupted_too_often(event, attempts):
                continue
            if not self._submit(task, attempts):
                self._retry.append(task)
                return

    def _count_attempt(self, exposure_id: str) -> int | None:
        """Record that processing starts: the attempts so far (this one included), kept by the
        store across restarts; None (and paused) when the store cannot write."""
        try:
            return self._store.mark_attempt(exposure_id)
        except CausalscopeError as error:
            self._pause.store_failed(error)
            return None

    def _interrupted_too_often(self, event: MovieReady, attempts: int) -> bool:
        """Quarantine an exposure past its attempts: each ended without an answer, the last
        ones because the daemon itself stopped (killed, or the machine went down) while it ran.
        An exposure that brings the daemon down would otherwise do it on every restart."""
        limit = self._settings.processing.resilience.max_attempts
        if attempts <= limit:
            return False
        self._quarantine(
            event,
            "interrupted",
            f"{event.movie_path}: {attempts - 1} attempts ended without a result (the daemon "
            f"stopped while it ran, or Ray failed it); processing.resilience.max_attempts is "
            f"{limit}",
        )
        return True

    def _submit(self, task: Task, attempts: int) -> bool:
        """Hand ``task`` to the pool; False (and halted) when Ray cannot take it."""
        assert self._pool is not None  # made before the first task
        task.attempt = attempts
        try:
            self._pool.submit(task)
        except PoolUnavailable as error:
            self.failures.unavailable(error.failure)
            return False
        return True

    # --- results -------------------------------------------------------------------------------

    def _handle(self, outcome: Outcome) -> None:
        task = outcome.task
        event: MovieReady = task.context
        if outcome.record is not None:
            self.failures.finished()
            latency = time.monotonic() - event.ready_at
            self._commit(outcome.record, latency, event.problems)
            return
        error = outcome.error
        if outcome.crashed:
            self._crashed(task, outcome.failure or _crash(error))
            return
        if isinstance(error, OSError):  # writing its micrographs failed: the disk, not the data
            self._retry.append(task)
            self._pause.outputs_failed(error, task.movie_path)
            return
        self._quarantine(
            event,
            "processing_error",
            f"{task.movie_path}: processing raised {type(error).__name__}: {_short(error)}",
        )

    def _crashed(self, task: Task, failure: Failure) -> None:
        """Ray failed ``task``: back to the queue, or quarantined after too many attempts."""
        event: MovieReady = task.context
        kinds = self.counts.ray_failures
        kinds[failure.code] = kinds.get(failure.code, 0) + 1
        if failure.code == "out_of_memory":
            self.memory.out_of_memory(self._own_memory())
        if self.failures.failed(task.exposure_id, task.attempt, failure) == "quarantine":
            self._quarantine(
                event,
                failure.code,
                f"{task.movie_path}: Ray failed it on each of {task.attempt} attempts; "
                f"last: {failure.reason}",
            )
            return
        self.counts.retried += 1
        if failure.reload:  # its frames are gone from the object store: read the movie again
            self._waiting.appendleft(event)
        else:
            self._retry.append(task)

    def _commit(self, record: ExposureRecord, latency: float, problems: tuple[str, ...]) -> None:
        try:
            self._store.commit_exposure(
                record, params_hash=self._params_hash, latency_s=latency, problems=problems
            )
        except CausalscopeError as error:
            self._uncommitted.append((record, latency, problems))
            self._pause.store_failed(error)
            return
        if record.status == "fail" and record.motion is None:
            # nothing could be computed from these frames: set the movie aside with the reasons
            messages = "; ".join(f.message for f in record.flags if f.severity == "fail")
            reason = (
                messages if record.movie_path in messages else f"{record.movie_path}: {messages}"
            )
            code = next((f.code for f in record.flags if f.severity == "fail"), "unusable")
            self._store.quarantine(
                exposure_id=record.exposure_id, origin=record.movie_path, code=code, reason=reason
            )
            self.counts.quarantined += 1
            self._reporter.quarantined(record.exposure_id, record.movie_path, code, reason)
        self.counts.committed += 1
        self.counts.by_status[record.status] = self.counts.by_status.get(record.status, 0) + 1
        self._known.discard(record.exposure_id)
        self._reporter.committed(record, latency)

    def _retry_commits(self) -> None:
        while self._uncommitted:
            record, latency, problems = self._uncommitted.popleft()
            self._commit(record, latency, problems)
            if self._uncommitted and self._uncommitted[-1][0] is record:
                return  # failed again: blocked

    def _quarantine(self, event: MovieReady, code: str, reason: str) -> None:
        try:
            self._store.quarantine(
                exposure_id=event.exposure_id,
                origin=str(event.movie_path),
                code=code,
                reason=reason,
            )
        except CausalscopeError as error:
            self._unrecorded.append(
                Rejected(event.exposure_id, str(event.movie_path), code, reason)
            )
            self._pause.store_failed(error)
            return
        self._known.discard(event.exposure_id)
        self.counts.quarantined += 1
        self._reporter.quarantined(event.exposure_id, str(event.movie_path), code, reason)

    # --- the operator --------------------------------------------------------------------------

    def _raise_alert(self, alert: Alert) -> None:
        if self._alert is not None:
            self._alert(alert)
        else:
            self._reporter.problem(alert.code, f"{alert.message}. {alert.advice}")

    def _note(self, message: str, kind: str = "gain") -> None:
        log.info("%s", message)
        try:
            self._store.log_event(kind, message)
        except CausalscopeError as error:  # a log line, never a stop
            log.warning("could not log %r: %s", message, error.message)


def _crash(error: BaseException | None) -> Failure:
    """A worker failure the pool did not classify."""
    return Failure(
        "worker_crashed",
        "Worker crashed",
        f"the worker died ({_short(error)})",
        "If it repeats, look for a segfault or a kill in Ray's logs.",
    )


def _short(error: BaseException | None) -> str:
    text = str(error) if error is not None else "unknown error"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
