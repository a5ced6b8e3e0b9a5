"""Helpers of the fault tests: small simulated movies, a watched folder, a session, a pool
wrapper that does something to Ray at chosen submissions, and a reporter that keeps alerts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from causalscope.config import Settings, load_settings
from causalscope.daemon.alerts import Alert
from causalscope.daemon.live import LiveOptions, LiveSession
from causalscope.daemon.session import SessionPaths
from causalscope.daemon.simulator import SimulationRequest, run_simulation
from tests.daemon._recorder import Recorder


class AlertRecorder(Recorder):
    """A :class:`Recorder` that also keeps the session's alerts."""

    def __init__(self) -> None:
        super().__init__()
        self.alerts: list[Alert] = []

    def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


def simulate(out: Path, n: int = 3) -> Path:
    """``n`` 512 x 512 x 8 movies in EPU's layout with gain and defects, under ``out``."""
    settings = load_settings(
        overrides={"simulation": {"size_px": 512, "n_frames": 8}, "processing.device": "cpu"}
    )
    run_simulation(settings, SimulationRequest(out_dir=out, n_exposures=n, seed=5))
    return out


def settings_for(microscope: Path, **processing: Any) -> Settings:
    """Settings for a session on ``microscope``'s movies (CPU, one exposure at a time)."""
    return load_settings(
        overrides={
            "processing": {"device": "cpu", "max_in_flight": 1, **processing},
            "watcher": {"settle_s": 0.3, "metadata_wait_s": 1.0, "poll_interval_s": 0.2},
            "detector": {
                "gain_reference": str(microscope / "gain_reference.mrc"),
                "defects_file": str(microscope / "defects.txt"),
            },
            # any free ports: a session or another test run on this machine may hold the
            # defaults (5556-5558)
            "store": {
                "publish_address": "tcp://127.0.0.1:0",
                "query_address": "tcp://127.0.0.1:0",
                "control_address": "tcp://127.0.0.1:0",
            },
        }
    )


def copy_movies(microscope: Path, watch: Path, movies: int | None = None) -> None:
    """Copy the first ``movies`` of ``microscope``'s movies (all by default) into ``watch``."""
    stems = sorted(p.stem for p in (microscope / "Images-Disc1").rglob("*.xml"))[:movies]
    for path in (microscope / "Images-Disc1").rglob("*"):
        if path.is_file() and any(path.name.startswith(stem) for stem in stems):
            target = watch / path.relative_to(microscope)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)


def run_session(
    microscope: Path,
    root: Path,
    settings: Settings,
    factory: Callable[[Any], Any],
    reporter: Recorder,
    movies: int | None = None,
) -> SessionPaths:
    """Watch a copy of ``microscope``'s movies (the first ``movies``) until idle; returns the
    session's paths."""
    watch = root / "watch"
    copy_movies(microscope, watch, movies)
    paths = SessionPaths.under(root / "sessions", "faults")
    options = LiveOptions(directory=watch, until_idle_s=2.0, publish=False, query=False)
    with LiveSession(settings, paths, options, reporter=reporter, pool_factory=factory) as s:
        s.run()
    return paths


def session_rows(paths: SessionPaths) -> tuple[list[tuple[Any, ...]], int]:
    """(exposure id, attempts, state) of every exposure, and the number of results."""
    with duckdb.connect(str(paths.database), read_only=True) as db:
        rows = db.execute(
            "SELECT exposure_id, attempts, state FROM exposures ORDER BY exposure_id"
        ).fetchall()
        results = db.execute("SELECT count(*) FROM results").fetchone()
    assert results is not None
    return rows, int(results[0])


class OnSubmit:
    """Wraps a pool; ``actions[n]`` runs around the ``n``-th submission (1-based) as
    ``action(pool, task, submit)``, where ``submit()`` hands the task on. Keeps the failures
    of every crashed outcome and calls ``on_crash`` after each."""

    def __init__(
        self,
        pool: Any,
        actions: dict[int, Callable[[Any, Any, Callable[[], None]], None]],
        on_crash: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self._actions = actions
        self._on_crash = on_crash
        self.submissions = 0
        self.failures: list[str] = []
        self.submitted: list[str] = []
        self.errors: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)

    def submit(self, task: Any) -> None:
        self.submissions += 1
        self.submitted.append(task.exposure_id)
        action = self._actions.get(self.submissions)
        if action is None:
            self.pool.submit(task)
        else:
            action(self.pool, task, lambda: self.pool.submit(task))

    def collect(self, timeout_s: float) -> list[Any]:
        outcomes = self.pool.collect(timeout_s)
        for outcome in outcomes:
            if outcome.crashed:
                self.failures.append(outcome.failure.code)
                self.errors.append(f"{type(outcome.error).__name__}: {outcome.error}")
                if self._on_crash is not None:
                    self._on_crash()
        return outcomes


def wrapped_pools(
    settings: Settings,
    root: Path,
    actions: dict[int, Callable[[Any, Any, Callable[[], None]], None]],
    *,
    n_workers: int = 1,
    on_crash: Callable[[], None] | None = None,
    **pool_options: Any,
) -> tuple[Callable[[Any], OnSubmit], list[OnSubmit]]:
    """A ``pool_factory`` for :func:`run_session` (session under ``root``) whose Ray worker
    pool is wrapped in :class:`OnSubmit` with ``actions``, and the list that receives it."""
    from causalscope.daemon.workers import RayWorkerPool

    made: list[OnSubmit] = []

    def factory(calibration: Any) -> OnSubmit:
        pool = RayWorkerPool(
            settings,
            output_dir=root / "sessions" / "faults",
            calibration=calibration,
            n_workers=n_workers,
            **pool_options,
        )
        made.append(OnSubmit(pool, actions, on_crash=on_crash))
        return made[-1]

    return factory, made
