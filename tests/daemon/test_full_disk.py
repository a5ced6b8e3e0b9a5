"""A full disk for real: a small tmpfs (mounted with a size limit where this machine allows it,
skipped with the reason where it does not) under the session database and under the output
folder, filled until the kernel says ENOSPC. Nothing is lost, processing pauses with one clear
message, and resumes by itself once space returns."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from causalscope.config import load_settings
from causalscope.daemon.bench._live import SmallFilesystemUnavailable, fill
from causalscope.daemon.bench._live import small_filesystem as mounted
from causalscope.daemon.live import LiveOptions, LiveSession
from causalscope.daemon.scheduler import Scheduler
from causalscope.daemon.session import SessionPaths
from causalscope.daemon.sources.events import MovieReady, SourceEvent
from causalscope.daemon.store import SessionStore
from tests.daemon._faults import AlertRecorder, copy_movies, session_rows, settings_for, simulate
from tests.daemon._recorder import Recorder
from tests.daemon.test_failures import HoldingPool

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def small_filesystem(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` mounted at ``where`` (skips the test where mounting fails)."""
    try:
        with mounted(where, size_mb) as folder:
            yield folder
    except SmallFilesystemUnavailable as error:
        pytest.skip(str(error))


def _events(ids: list[str]) -> queue.Queue[SourceEvent]:
    events: queue.Queue[SourceEvent] = queue.Queue()
    for exposure_id in ids:
        frames = np.zeros((2, 8, 8), dtype=np.uint8)
        events.put(MovieReady(exposure_id, Path(f"{exposure_id}.mrc"), "stream", frames=frames))
    return events


def test_a_full_database_disk_pauses_once_and_resumes_when_space_returns(tmp_path: Path) -> None:
    ids = [f"e{i:02d}" for i in range(40)]
    reporter = Recorder()
    with small_filesystem(tmp_path / "db", 4) as folder:
        path = folder / "s.duckdb"
        with SessionStore(path) as store:
            store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
            filler = fill(folder)
            scheduler = Scheduler(
                load_settings(),
                store,
                lambda calibration: HoldingPool(hold=1),
                _events(ids),
                params_hash="h",
                reporter=reporter,
                retry_after_s=0.3,
            )
            deadline = time.monotonic() + 20
            while not reporter.problems:
                assert time.monotonic() < deadline, "the full disk was never reported"
                scheduler.step(0.01)
            for _ in range(30):  # still full: retried, and not said again
                scheduler.step(0.05)
            filler.unlink()  # space returns
            deadline = time.monotonic() + 30
            while not scheduler.idle:
                assert time.monotonic() < deadline, "processing did not resume"
                scheduler.step(0.01)
            counts = store.counts()
        with duckdb.connect(str(path), read_only=True) as db:  # what a restart would find
            results = db.execute("SELECT count(*) FROM results").fetchone()
            seen = db.execute("SELECT count(*) FROM exposures").fetchone()
    assert len(reporter.problems) == 1, reporter.problems  # one clear message
    title, message = reporter.problems[0]
    assert title == "Session database disk full", title
    assert "s.duckdb" in message and "No space left on device" in message
    assert "nothing is lost" in message and "paused" in message
    assert counts["done"] == len(ids)
    assert results == (len(ids),) and seen == (len(ids),)


@pytest.fixture(scope="module")
def microscope(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate(tmp_path_factory.mktemp("full_disk_microscope"), n=2)


def test_a_full_output_disk_pauses_once_and_resumes_when_space_returns(
    ray_cluster: Any, microscope: Path, tmp_path: Path
) -> None:
    settings = settings_for(microscope)
    paths = SessionPaths.under(tmp_path / "sessions", "full")
    reporter = AlertRecorder()
    watch = tmp_path / "watch"
    copy_movies(microscope, watch)
    options = LiveOptions(
        directory=watch, until_idle_s=2.0, publish=False, query=False, retry_after_s=0.5
    )
    with small_filesystem(paths.root / "micrographs", 64) as folder:
        filler = fill(folder)
        with LiveSession(settings, paths, options, reporter=reporter) as session:
            assert session.scheduler is not None
            deadline = time.monotonic() + 180
            while not reporter.problems:
                assert time.monotonic() < deadline, "the full disk was never reported"
                session.scheduler.step(0.2)
            for _ in range(10):  # still full: retried, and not said again
                session.scheduler.step(0.2)
            filler.unlink()  # space returns
            session.run()
        written = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert len(reporter.problems) == 1, reporter.problems  # one clear message
    title, message = reporter.problems[0]
    assert title == "Output disk full"
    assert "No space left on device" in message and "no exposure is lost" in message
    rows, results = session_rows(paths)
    assert results == 2 and {state for _, _, state in rows} == {"done"}
    assert len(written) >= 2  # each exposure's micrographs, on the small disk
