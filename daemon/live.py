"""A live session: sources -> scheduler -> Ray actors -> store, until stopped or idle.

``causalscope watch`` and ``causalscope demo`` both run one :class:`LiveSession`. It opens (or
resumes) the session's store, records the run's settings, starts the sources, resumes what a
previous run left pending, and loops the scheduler until told to stop.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from daemon.scheduler import Scheduler
from daemon.session import SessionPaths, params_hash, software_version
from daemon.sources.events import SourceEvent

if TYPE_CHECKING:
    from actors.exposure import DetectorCalibration
    from config import Settings
    from daemon.scheduler import Pool
    from daemon.store import SessionStore
    from models.records import ExposureRecord

__all__ = ["LiveOptions", "LiveSession", "TerminalReporter"]


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
    retry_after_s
        Pause before retrying after a storage error (a full disk).
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
    retry_after_s: float = 10.0
    command_line: Sequence[str] = field(default_factory=lambda: list(sys.argv))


class TerminalReporter:
    """One line per exposure and per problem, for a person at a terminal."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._out = stream or sys.stdout
        self._quiet = quiet
        self._n = 0

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def committed(self, record: ExposureRecord, latency_s: float) -> None:
        """One line: id, status, defocus, fit resolution, ice, drift, latency; then reasons."""
        self._n += 1
        if self._quiet:
            return
        parts = [f"[{self._n:4d}] {record.exposure_id}  {record.status:<4}"]
        if record.ctf is not None:
            parts.append(f"defocus {record.ctf.defocus_angstrom / 1e4:5.2f} um")
            fit = record.ctf.fit_resolution_angstrom
            parts.append(f"fit {fit:4.1f} A" if fit else "fit   -  ")
            if record.ctf.ice_thickness_nm is not None:
                parts.append(f"ice {record.ctf.ice_thickness_nm:3.0f} nm")
        if record.motion is not None:
            parts.append(f"drift {record.motion.total_drift_px:5.1f} px")
        parts.append(f"{latency_s:5.1f} s")
        self._print("  ".join(parts))
        if record.status != "pass":
            for reason in record.reasons[:3]:
                self._print(f"         {reason}")

    def quarantined(self, exposure_id: str | None, origin: str, code: str, reason: str) -> None:
        """A quarantined input, with its reason."""
        self._print(f"[quarantine] {exposure_id or origin}: {code}: {reason}")

    def skipped(self, exposure_id: str, state: str) -> None:
        """Seen before: nothing to do."""
        if not self._quiet:
            self._print(f"[  skip] {exposure_id}: already {state} in this session")

    def problem(self, title: str, message: str) -> None:
        """Something the operator must know."""
        self._print(f"[problem] {title}: {message}")


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

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open the store, record this run, start Ray's pool lazily and the sources."""
        from config import settings_to_dict
        from daemon.store import SessionStore

        self.paths.root.mkdir(parents=True, exist_ok=True)
        store_settings = self.settings.store
        self.store = SessionStore(
            self.paths.database,
            publish_address=store_settings.publish_address if self.options.publish else None,
            query_address=store_settings.query_address if self.options.query else None,
            ctf_star_path=self.paths.ctf_star,
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
            reporter=self.reporter,
            retry_after_s=self.options.retry_after_s,
        )
        resumed = self.scheduler.resume_pending()
        if resumed:
            self.reporter.problem(
                "Resuming", f"{resumed} exposure(s) left unfinished by the last run are queued"
            )
        self._start_sources()

    def _ray_pool(self, calibration: DetectorCalibration) -> Pool:
        from daemon.workers import RayWorkerPool, start_ray

        start_ray(self.options.ray_address)
        pool = RayWorkerPool(
            self.settings,
            output_dir=self.paths.root,
            calibration=calibration,
            n_workers=self.options.n_workers,
            threads_per_worker=self.options.threads_per_worker,
        )
        assert self.store is not None
        self.store.log_event("workers", pool.describe())
        return pool

    def _start_sources(self) -> None:
        if self.options.directory is not None:
            from daemon.sources.watcher import DirectoryWatcher

            watcher = DirectoryWatcher(
                Path(self.options.directory),
                self.settings.watcher,
                self.events,
                ignore=[self.paths.root],
            )
            watcher.start()
            self._sources.append(watcher)
        if self.options.stream_address is not None:
            from daemon.sources.stream import FrameStreamReceiver

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

    def close(self) -> None:
        """Stop the sources and actors and close the store (pending work stays pending)."""
        for source in self._sources:
            try:
                source.stop()
            except Exception as error:  # report, but close the rest
                self.reporter.problem("Source did not stop cleanly", str(error))
        self._sources = []
        if self.scheduler is not None:
            self.scheduler.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> LiveSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
