"""A live session: sources -> scheduler -> Ray actors -> store, until stopped or idle.

``causalscope watch`` and ``causalscope demo`` both run one :class:`LiveSession`. It opens (or
resumes) the session's store, records the run's settings, starts the sources, resumes what a
previous run left pending, and loops the scheduler until told to stop.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from causalscope.daemon.alerts import Alert, AlertMonitor
from causalscope.daemon.causal import CausalTracker, not_learned_message
from causalscope.daemon.control import ControlServer, new_token
from causalscope.daemon.evaluation import session_tracker
from causalscope.daemon.finetune import Finetuner, PickerFinetuner
from causalscope.daemon.live_control import StatusBoard, session_status
from causalscope.daemon.rates import RateWindow
from causalscope.daemon.scheduler import Scheduler
from causalscope.daemon.scoring import ScoreKeeper
from causalscope.daemon.session import SessionPaths, params_hash, software_version
from causalscope.daemon.sources.events import SourceEvent
from causalscope.daemon.terminal import TerminalReporter
from causalscope.models.errors import CausalscopeError

if TYPE_CHECKING:
    from causalscope.config import Settings
    from causalscope.daemon.scheduler import Pool
    from causalscope.daemon.store import SessionStore
    from causalscope.models.causal import CausalUpdate
    from causalscope.models.optics import DetectorCalibration
    from causalscope.models.records import ExposureRecord

__all__ = ["LiveOptions", "LiveSession"]


@dataclass(frozen=True)
class LiveOptions:
    """How to run a session.

    Parameters
    ----------
    directory
        Folder to watch (the microscope's output), or None.
    stream_address
        ZeroMQ address to receive frames on (PULL, binds), or None.
    ray_address
        Join this Ray cluster instead of starting a local one.
    n_workers
        Exposure actors; default: one per GPU, else one per CPU.
    threads_per_worker
        Torch threads (and Ray CPUs) of each CPU actor.
    until_idle_s
        Stop once nothing has happened for this long (batch-like use, tests); None runs until
        stopped.
    publish, query
        Start the store's PUB and query endpoints (the dashboard and ``causalscope query`` use
        them while the session runs).
    control
        Open the control endpoint (operator actions from the dashboard; needs publish).
    terminal_logs
        Let Ray's actors print on this terminal (off while the dashboard owns it).
    retry_after_s
        Pause before retrying after a storage error (a full disk).
    final_update_s
        At the end, how long to wait in all for the running reconstructions' last update (the
        exposures it would hold are handed over again at the next start).
    command_line
        Recorded with the run's settings.
    """

    directory: Path | None = None
    stream_address: str | None = None
    ray_address: str | None = None
    n_workers: int | None = None
    threads_per_worker: int = 1
    until_idle_s: float | None = None
    publish: bool = True
    query: bool = True
    control: bool = True
    terminal_logs: bool = True
    retry_after_s: float = 10.0
    final_update_s: float = 120.0
    command_line: Sequence[str] = field(default_factory=lambda: list(sys.argv))


class LiveSession:
    """Runs one session (see the module docstring).

    Parameters
    ----------
    settings
        Resolved settings.
    paths
        The session's folder and files.
    options
        Sources, cluster and stopping rule.
    reporter
        Told of every commit, quarantine and problem (default: the terminal).
    pool_factory
        Makes the worker pool from the calibration; default: Ray actors.
    """

    def __init__(
        self,
        settings: Settings,
        paths: SessionPaths,
        options: LiveOptions,
        *,
        reporter: Any = None,
        pool_factory: Callable[[DetectorCalibration], Pool] | None = None,
    ) -> None:
        if options.directory is None and options.stream_address is None:
            raise ValueError("a live session needs a directory, a stream address, or both")
        self.settings = settings
        self.paths = paths
        self.options = options
        self.reporter = reporter or TerminalReporter()
        self._pool_factory = pool_factory
        self.events: queue.Queue[SourceEvent] = queue.Queue()
        self.stop_event = threading.Event()
        self.store: SessionStore | None = None
        self.scheduler: Scheduler | None = None
        self._sources: list[Any] = []
        self.params_hash = params_hash(settings)
        self.started_at = time.monotonic()
        self.run_id: int | None = None
        self.alerts = AlertMonitor(settings.alerts)
        self.control: ControlServer | None = None
        picking = settings.processing.picking
        self.finetuner = Finetuner(
            every=picking.finetune_every if picking.enabled and picking.denoise else 0,
            steps=picking.finetune_steps,
            checkpoint=paths.root / "denoiser.pt",
        )
        self.picker_finetuner = PickerFinetuner.for_session(picking, paths.root)
        causal = settings.processing.causal
        self.causal = CausalTracker(discount=causal.discount) if causal.enabled else None
        self.evaluation = session_tracker(settings, paths.root / "reconstruction")
        self.scores: ScoreKeeper | None = None
        self.rates = RateWindow()
        self._next_status = 0.0
        self.board = StatusBoard(self)  # the status the control endpoint answers with

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open the store, record this run, start Ray's pool lazily and the sources."""
        from causalscope.config import settings_to_dict
        from causalscope.daemon.store import SessionStore

        self.paths.root.mkdir(parents=True, exist_ok=True)
        store_settings = self.settings.store
        self.store = SessionStore(
            self.paths.database,
            publish_address=store_settings.publish_address if self.options.publish else None,
            query_address=store_settings.query_address if self.options.query else None,
            ctf_star_path=self.paths.ctf_star,
            memory_limit_mb=store_settings.memory_limit_mb,
        )
        self.run_id = self.store.start_run(
            settings_json=json.dumps(settings_to_dict(self.settings)),
            version=software_version(),
            command_line=list(self.options.command_line),
            params_hash=self.params_hash,
        )
        self.scheduler = Scheduler(
            self.settings,
            self.store,
            self._pool_factory or self._ray_pool,
            self.events,
            params_hash=self.params_hash,
            reporter=_Tap(self),
            retry_after_s=self.options.retry_after_s,
            alert=self.raise_alert,
            hold_calibration=self._gain_pending,
        )
        if self.options.control and self.options.publish:
            token = new_token()
            self.control = ControlServer(
                store_settings.control_address,
                token=token,
                handler=self.board.act,
                answer_now=self.board.answer_now,
            )
            self.store.announce_control(self.control.endpoint, token)
        if self.causal is not None:
            self.causal.replay(*self.store.causal_history())
        if self.settings.processing.scoring.enabled:
            self.scores = ScoreKeeper(
                self.settings.processing.scoring, self.store, self.raise_alert
            )
        if self.evaluation is not None:
            stars, stored_version, labels = self.store.evaluation_history()
            self.evaluation.labels.update(labels)
            done = [(exposure_id, star) for exposure_id, star, _ in stars]
            self.evaluation.resume(done, stored_version=stored_version)
        resumed = self.scheduler.resume_pending()
        if resumed:
            self.reporter.problem(
                "Resuming", f"{resumed} exposure(s) left unfinished by the last run are queued"
            )
        self._start_sources()

    def _ray_pool(self, calibration: DetectorCalibration) -> Pool:
        from causalscope.daemon.workers import RayWorkerPool, start_ray

        start_ray(self.options.ray_address, log_to_terminal=self.options.terminal_logs)
        pool = RayWorkerPool(
            self.settings,
            output_dir=self.paths.root,
            calibration=calibration,
            n_workers=self.options.n_workers,
            threads_per_worker=self.options.threads_per_worker,
        )
        assert self.store is not None
        self.store.log_event("workers", pool.describe())
        for kind, tuner in (("denoiser", self.finetuner), ("picker", self.picker_finetuner)):
            weights = tuner.initial_weights()
            if weights is not None:  # a restart goes on with the session's fine-tuned models
                pool.set_weights(kind, weights)
        if self.causal is not None:
            self.causal.start()  # a restart's replay, on the actor now that Ray runs
        if self.evaluation is not None:
            self.evaluation.start()
        return pool

    def _start_sources(self) -> None:
        if self.options.directory is not None:
            from causalscope.daemon.sources.watcher import DirectoryWatcher

            watcher = DirectoryWatcher(
                Path(self.options.directory),
                self.settings.watcher,
                self.events,
                ignore=[self.paths.root],
            )
            watcher.start()
            self._sources.append(watcher)
        if self.options.stream_address is not None:
            from causalscope.daemon.sources.stream import FrameStreamReceiver

            receiver = FrameStreamReceiver(
                self.settings.stream,
                self.events,
                spool_dir=self.paths.spool,
                address=self.options.stream_address,
            )
            receiver.start()
            self._sources.append(receiver)

    @property
    def sources(self) -> list[Any]:
        """The running sources (watcher, stream receiver)."""
        return list(self._sources)

    def _gain_pending(self) -> bool:
        """A watcher may still hand over a gain reference from the watched folder."""
        return any(getattr(source, "gain_pending", False) for source in self._sources)

    def _sources_idle(self) -> bool:
        return all(getattr(source, "idle", True) for source in self._sources)

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Loop until ``stop_event`` is set, ``until()`` is true while idle, or the idle limit.

        A source thread's error is raised here.
        """
        if self.scheduler is None:
            self.open()
        assert self.scheduler is not None
        idle_since: float | None = None
        while not self.stop_event.is_set():
            for source in self._sources:
                source.check()
            self.scheduler.step(0.2)
            self._between_steps()
            idle = self.scheduler.idle and self._sources_idle()
            if not idle:
                idle_since = None
                continue
            if until is not None and until():
                break
            now = time.monotonic()
            idle_since = idle_since or now
            if (
                self.options.until_idle_s is not None
                and now - idle_since >= self.options.until_idle_s
            ):
                break

    # --- the operator's side: status, alerts, actions --------------------------------------

    def _between_steps(self) -> None:
        if self.control is not None:
            self.control.check()
            self.control.serve_pending()
        if self.scheduler is not None and self.store is not None:
            self._poll_finetuners(self.store, self.scheduler.pool)
        self._store_causal_updates()
        self._store_evaluations()
        now = time.monotonic()
        # a failed read skips one heartbeat; a full disk is reported by the scheduler
        with contextlib.suppress(CausalscopeError):
            if self.store is not None and now >= self._next_status:
                self._next_status = now + 1.0
                self.store.publish(b"status", self.board.refresh())
            else:
                self.board.refresh_on_change()

    def _store_causal_updates(self) -> None:
        """Store the causal model's finished updates; pass its envelope prior to the actors."""
        if self.causal is None or self.store is None:
            return
        updates = self.causal.poll()
        for update in updates:
            try:
                self.store.commit_causal(update)
                if update.regime_change:
                    self._regime_change(update)
                message = not_learned_message(update)
                if message is not None:
                    self.store.log_event("causal", message, exposure_id=update.exposure_id)
            except CausalscopeError as error:  # replayed from the inputs at the next start
                self.reporter.problem(error.title, error.message)
        prior = self.causal.prior_due(len(updates))
        pool = self.scheduler.pool if self.scheduler is not None else None
        if prior is not None and pool is not None and hasattr(pool, "set_restoration_prior"):
            pool.set_restoration_prior(prior)

    def _store_evaluations(self, *, final: bool = False, wait_s: float = 0.0) -> None:
        """Store the running reconstructions' finished updates; report what they skipped."""
        tracker = self.evaluation
        if tracker is None or self.store is None:
            return
        for update in tracker.poll(final=final, wait_s=wait_s):
            try:
                stored = self.store.commit_evaluation(update)
            except CausalscopeError as error:  # the evaluator hands it over again at restart
                self.reporter.problem(error.title, error.message)
                continue
            if stored and self.scores is not None:
                self.scores.reconstruction(update)
        while tracker.errors:
            message = tracker.errors.pop(0)
            with contextlib.suppress(CausalscopeError):
                self.store.log_event("reconstruction", f"running reconstructions: {message}")

    def _regime_change(self, update: CausalUpdate) -> None:
        assert self.store is not None
        alert = Alert(
            code="causal_regime_change",
            severity="warn",
            message=(
                f"The causal model sees a new regime from {update.exposure_id} on (exposure "
                f"{update.index}): what limits resolution has changed, so older evidence is "
                "down-weighted"
            ),
            advice="Check what changed (a new grid or square, the ice, the optics) and "
            "compare the ranked causes before and after.",
            exposure_id=update.exposure_id,
        )
        data = alert.to_dict()
        message = data.pop("message")
        self.store.log_event("alert", str(message), **data)
        show = getattr(self.reporter, "alert", None)
        if show is not None:
            show(alert)

    def _poll_finetuners(self, store: SessionStore, pool: Pool | None) -> None:
        """Log finished fine-tuning rounds; alert on a label file that was refused."""
        for kind, tuner in (("denoiser", self.finetuner), ("picker", self.picker_finetuner)):
            report = tuner.poll(pool)
            if report is not None:
                with contextlib.suppress(CausalscopeError):  # a log line, never a stop
                    store.log_event(kind, tuner.describe(report), **report)
        for alert in self.picker_finetuner.alerts():
            self.raise_alert(alert)

    def status(self) -> dict[str, Any]:
        """What the dashboard's overview shows (published every second as ``status``)."""
        return session_status(self)

    def record_committed(self, record: ExposureRecord) -> None:
        """Raise the alerts this record causes: logged as ``alert`` events and published."""
        assert self.store is not None
        self.finetuner.committed(record)
        self.picker_finetuner.committed(record)
        if self.causal is not None and record.causal is not None:
            self.causal.observe(record.exposure_id, record.causal)
        star, picked = record.outputs.get("particles_star"), record.picking
        if self.evaluation is not None and star and picked is not None and record.status != "fail":
            if picked.n_particles > 0:
                self.evaluation.committed(record.exposure_id, star, picked.n_particles)
        if self.scores is not None:
            self.scores.exposure(record)
        for alert in self.alerts.update(record):
            self.raise_alert(alert)

    def raise_alert(self, alert: Alert) -> None:
        """Log ``alert`` as an ``alert`` event (published to the dashboard) and show it."""
        assert self.store is not None
        data = alert.to_dict()
        message = data.pop("message")
        try:
            self.store.log_event("alert", str(message), **data)
        except CausalscopeError as error:  # the alert still shows on the terminal
            self.reporter.problem(error.title, error.message)
        show = getattr(self.reporter, "alert", None)
        if show is not None:
            show(alert)

    def close(self) -> None:
        """Stop the sources and actors and close the store (pending work stays pending)."""
        for source in self._sources:
            try:
                source.stop()
            except Exception as error:  # report, but close the rest
                self.reporter.problem("Source did not stop cleanly", str(error))
        self._sources = []
        self.finetuner.close()
        self.picker_finetuner.close()
        if self.causal is not None:
            for update in self.causal.poll(wait_s=2.0):  # what finishes in time is kept
                with contextlib.suppress(CausalscopeError):
                    if self.store is not None:
                        self.store.commit_causal(update)
            self.causal.close()
        if self.evaluation is not None:
            # the particles of the last exposures, in a last update, when it finishes in time
            self._store_evaluations(final=True, wait_s=self.options.final_update_s)
            self.evaluation.close()
        if self.scheduler is not None:
            self.scheduler.close()
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> LiveSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Tap:
    """Passes the scheduler's reports on, and raises alerts from each committed record."""

    def __init__(self, session: LiveSession) -> None:
        self._session = session

    def committed(self, record: ExposureRecord, latency_s: float) -> None:
        self._session.record_committed(record)
        self._session.reporter.committed(record, latency_s)

    def quarantined(self, exposure_id: str | None, origin: str, code: str, reason: str) -> None:
        self._session.reporter.quarantined(exposure_id, origin, code, reason)

    def skipped(self, exposure_id: str, state: str) -> None:
        self._session.reporter.skipped(exposure_id, state)

    def problem(self, title: str, message: str) -> None:
        if self._session.store is not None:
            try:
                self._session.store.log_event("problem", f"{title}: {message}")
            except CausalscopeError:
                pass  # the store is the problem; the terminal still says it
        self._session.reporter.problem(title, message)
