"""A gain reference in the watched folder: recognised by the watcher, never taken for a movie,
and used as the session's gain when the settings name none and its shape fits the movies."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from causalscope.config import load_settings
from causalscope.config.acquisition import WatcherSettings
from causalscope.daemon.alerts import Alert
from causalscope.daemon.calibration import GainChoice
from causalscope.daemon.formats import write_gain, write_mrc_movie
from causalscope.daemon.scheduler import Scheduler
from causalscope.daemon.sources import DirectoryWatcher, GainFound, MovieReady, SourceEvent
from causalscope.daemon.store import SessionStore
from causalscope.daemon.workers import Outcome, Task
from tests.daemon._recorder import Recorder
from tests.daemon.sources._helpers import take, wait_until
from tests.daemon.store._records import make_record

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def _gain(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    gain = np.random.default_rng(seed).uniform(0.8, 1.25, size=shape).astype(np.float32)
    gain[:, 3] = 0.0  # a dead column, as a real gain reference has
    return gain


def _movie(path: Path, shape: tuple[int, int] = (32, 32)) -> Path:
    frames = np.random.default_rng(1).integers(0, 4, size=(3, *shape)).astype(np.uint8)
    return write_mrc_movie(path, frames, pixel_size_angstrom=1.0)


# -- the watcher --------------------------------------------------------------------------------


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    """A folder as microscopes leave it: movies beside gain references of each kind."""
    folder = tmp_path / "watched"
    data = folder / "GridSquare_1" / "Data"
    _movie(data / "FoilHole_1_Data_2_fractions.mrc")
    _movie(folder / "again.tif")  # a movie: 'gain*.tif' is anchored at the start of the name
    write_gain(folder / "gain_reference.mrc", _gain((32, 32)), pixel_size_angstrom=1.0)
    tifffile.imwrite(folder / "20240501_Falcon4i.gain", _gain((32, 32), seed=2))  # EPU EER
    tifffile.imwrite(folder / "Gain_K3.TIFF", _gain((32, 32), seed=3))  # Gatan, any case
    write_gain(folder / "CountRef_session.mrc", _gain((32, 32)), pixel_size_angstrom=1.0)
    return folder


@pytest.fixture
def started() -> Iterator[list[DirectoryWatcher]]:
    watchers: list[DirectoryWatcher] = []
    yield watchers
    for watcher in watchers:
        watcher.stop()
        watcher.check()


def _start(
    folder: Path, started: list[DirectoryWatcher], **overrides: Any
) -> tuple[DirectoryWatcher, queue.Queue[SourceEvent]]:
    options: dict[str, Any] = {"settle_s": 0.2, "metadata_wait_s": 0.3, "poll_interval_s": 0.1}
    events: queue.Queue[SourceEvent] = queue.Queue()
    watcher = DirectoryWatcher(folder, WatcherSettings(**{**options, **overrides}), events)
    started.append(watcher)
    watcher.start()
    return watcher, events


def test_gain_references_are_found_and_never_emitted_as_movies(
    watched: Path, started: list[DirectoryWatcher]
) -> None:
    watcher, events = _start(watched, started)
    got = take(events, 6)
    gains = sorted(e.path.name for e in got if isinstance(e, GainFound))
    movies = sorted(e.exposure_id for e in got if isinstance(e, MovieReady))
    assert gains == [
        "20240501_Falcon4i.gain",
        "CountRef_session.mrc",
        "Gain_K3.TIFF",
        "gain_reference.mrc",
    ]
    assert movies == ["FoilHole_1_Data_2_fractions", "again"]
    wait_until(lambda: watcher.idle, what="watcher idle")
    assert events.empty()


def test_gain_pending_until_every_gain_present_is_on_the_queue(
    watched: Path, started: list[DirectoryWatcher]
) -> None:
    watcher, events = _start(watched, started, settle_s=0.5)
    assert watcher.gain_pending  # nothing looked at yet
    wait_until(lambda: not watcher.gain_pending, what="gain references settled")
    queued: list[SourceEvent] = []
    while not events.empty():
        queued.append(events.get_nowait())
    assert sum(isinstance(e, GainFound) for e in queued) == 4


def test_a_gain_written_later_holds_until_it_settles(
    tmp_path: Path, started: list[DirectoryWatcher]
) -> None:
    folder = tmp_path / "watched"
    folder.mkdir()
    watcher, events = _start(folder, started, settle_s=0.4)
    wait_until(lambda: not watcher.gain_pending, what="the empty folder looked at")
    write_gain(folder / "gain.mrc", _gain((32, 32)), pixel_size_angstrom=1.0)
    wait_until(lambda: watcher.gain_pending, what="the new gain seen")
    assert events.empty()  # settling: not emitted yet
    wait_until(lambda: not watcher.gain_pending, what="the new gain settled")
    (event,) = take(events, 1, timeout_s=0.1)
    assert isinstance(event, GainFound) and event.path == folder / "gain.mrc"


def test_without_gain_patterns_a_gain_file_is_a_movie_again(
    watched: Path, started: list[DirectoryWatcher]
) -> None:
    _watcher, events = _start(watched, started, gain_patterns=())
    got = take(events, 5)
    assert not any(isinstance(e, GainFound) for e in got)
    names = {e.exposure_id for e in got if isinstance(e, MovieReady)}
    assert {"gain_reference", "CountRef_session", "Gain_K3"} <= names


# -- choosing the gain ---------------------------------------------------------------------------


class _Told:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.notes: list[str] = []

    def choice(self, **detector: Any) -> GainChoice:
        settings = load_settings(overrides={"detector": detector}) if detector else load_settings()
        return GainChoice(settings, alert=self.alerts.append, note=self.notes.append)


def test_a_found_gain_that_fits_is_the_gain(tmp_path: Path) -> None:
    gain = _gain((48, 64))
    path = write_gain(tmp_path / "gain.mrc", gain, pixel_size_angstrom=1.0)
    told = _Told()
    choice = told.choice()
    choice.offer(path)
    calibration = choice.calibration((48, 64), 1)
    assert calibration.gain is not None
    np.testing.assert_array_equal(calibration.gain, gain)
    assert told.alerts == []
    assert told.notes == [
        f"gain reference {path} from the watched folder is used (detector.gain_reference is "
        "not set)"
    ]


def test_a_found_gain_is_oriented_and_enlarged_as_configured(tmp_path: Path) -> None:
    gain = _gain((16, 24))
    path = write_gain(tmp_path / "x.gain.mrc", gain, pixel_size_angstrom=1.0)
    choice = _Told().choice(gain_rotation=1, gain_flip="x")
    choice.offer(path)
    calibration = choice.calibration((48, 32), 2)  # EER rendered at 2x: (24, 16) * 2
    expected = np.rot90(gain, k=-1)[:, ::-1]
    expected = np.repeat(np.repeat(expected, 2, axis=0), 2, axis=1)
    assert calibration.gain is not None
    np.testing.assert_array_equal(calibration.gain, expected)


def test_a_found_gain_of_another_shape_is_an_alert_naming_both(tmp_path: Path) -> None:
    path = write_gain(tmp_path / "gain.mrc", _gain((48, 64)), pixel_size_angstrom=1.0)
    told = _Told()
    choice = told.choice()
    choice.offer(path)
    assert choice.calibration((32, 32), 1).gain is None
    (alert,) = told.alerts
    assert (alert.code, alert.severity) == ("gain_reference_mismatch", "warn")
    assert alert.message == (
        f"Gain reference {path} in the watched folder is 64x48 px but the movies are 32x32 px; "
        "it is not used and the movies are processed without gain correction"
    )
    assert "detector.gain_reference" in alert.advice
    # turned by a quarter it would fit: the alert says which setting to check
    told = _Told()
    choice = told.choice()
    choice.offer(path)
    assert choice.calibration((64, 48), 1).gain is None
    assert told.alerts[0].message.endswith("check detector.gain_rotation")


def test_the_configured_gain_wins(tmp_path: Path) -> None:
    configured = _gain((32, 32), seed=5)
    configured_path = write_gain(tmp_path / "site_gain.mrc", configured, pixel_size_angstrom=1)
    found = write_gain(tmp_path / "watched_gain.mrc", _gain((32, 32)), pixel_size_angstrom=1)
    told = _Told()
    choice = told.choice(gain_reference=str(configured_path))
    choice.offer(configured_path)  # the configured file itself, in the watched folder
    choice.offer(found)
    calibration = choice.calibration((32, 32), 1)
    assert calibration.gain is not None
    np.testing.assert_array_equal(calibration.gain, configured)
    assert told.alerts == []
    assert told.notes == [
        f"gain reference {found} in the watched folder is not used: detector.gain_reference "
        f"names {configured_path}"
    ]


def test_two_found_gains_or_an_unreadable_or_late_one_are_not_used(tmp_path: Path) -> None:
    one = write_gain(tmp_path / "a_gain.mrc", _gain((32, 32)), pixel_size_angstrom=1.0)
    two = write_gain(tmp_path / "b_gain.mrc", _gain((32, 32), 9), pixel_size_angstrom=1.0)
    told = _Told()
    choice = told.choice()
    choice.offer(one)
    choice.offer(two)
    assert choice.calibration((32, 32), 1).gain is None
    assert [a.code for a in told.alerts] == ["gain_reference_ambiguous"]
    assert str(one) in told.alerts[0].message and str(two) in told.alerts[0].message

    broken = tmp_path / "broken.gain"
    broken.write_bytes(b"not a TIFF at all")
    told = _Told()
    choice = told.choice()
    choice.offer(broken)
    assert choice.calibration((32, 32), 1).gain is None
    assert [a.code for a in told.alerts] == ["gain_reference_unusable"]
    assert str(broken) in told.alerts[0].message

    told = _Told()
    choice = told.choice()
    assert choice.calibration((32, 32), 1).gain is None
    choice.offer(one)
    assert [a.code for a in told.alerts] == ["gain_reference_late"]
    assert told.notes == []


# -- the scheduler waits for the watcher's gain -------------------------------------------------


class _InstantPool:
    """Returns each task's record at once; remembers the calibration it was made with."""

    def __init__(self, calibration: Any) -> None:
        self.calibration = calibration
        self._done: list[Outcome] = []

    @property
    def in_flight(self) -> int:
        return len(self._done)

    def submit(self, task: Task) -> None:
        self._done.append(Outcome(task, record=make_record(task.exposure_id)))

    def collect(self, timeout_s: float) -> list[Outcome]:
        done, self._done = self._done, []
        return done

    def describe(self) -> str:
        return "instant"

    def shutdown(self) -> None:
        pass


def test_the_pool_waits_for_a_pending_gain_and_is_made_with_it(tmp_path: Path) -> None:
    gain = _gain((8, 8))
    gain_path = write_gain(tmp_path / "gain.mrc", gain, pixel_size_angstrom=1.0)
    events: queue.Queue[SourceEvent] = queue.Queue()
    frames = np.ones((2, 8, 8), dtype=np.uint8)
    events.put(MovieReady("a", tmp_path / "a.mrc", "stream", frames=frames))
    pending = [True]
    pools: list[_InstantPool] = []

    def factory(calibration: Any) -> _InstantPool:
        pools.append(_InstantPool(calibration))
        return pools[-1]

    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        scheduler = Scheduler(
            load_settings(),
            store,
            factory,
            events,
            params_hash="h",
            reporter=Recorder(),
            hold_calibration=lambda: pending[0],
        )
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            scheduler.step(0.02)
        assert pools == [] and scheduler.queued == 1  # read, waiting for the calibration
        events.put(GainFound(gain_path))  # the watcher queues the gain, then says it is done
        pending[0] = False
        while not scheduler.idle:
            scheduler.step(0.02)
        logged = store.exposure_row("a")
        scheduler.close()
    assert logged is not None and logged["exposure_id"] == "a"
    (pool,) = pools
    np.testing.assert_array_equal(pool.calibration.gain, gain)


def test_with_a_configured_gain_the_pool_does_not_wait(tmp_path: Path) -> None:
    gain = _gain((8, 8), seed=4)
    gain_path = write_gain(tmp_path / "site_gain.mrc", gain, pixel_size_angstrom=1.0)
    events: queue.Queue[SourceEvent] = queue.Queue()
    events.put(MovieReady("a", tmp_path / "a.mrc", "stream", frames=np.ones((2, 8, 8), np.uint8)))
    pools: list[_InstantPool] = []

    def factory(calibration: Any) -> _InstantPool:
        pools.append(_InstantPool(calibration))
        return pools[-1]

    settings = load_settings(overrides={"detector.gain_reference": str(gain_path)})
    with SessionStore(tmp_path / "s.duckdb") as store:
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        scheduler = Scheduler(
            settings,
            store,
            factory,
            events,
            params_hash="h",
            reporter=Recorder(),
            hold_calibration=lambda: True,  # a watcher that never settles its gain
        )
        deadline = time.monotonic() + 10.0
        while not scheduler.idle and time.monotonic() < deadline:
            scheduler.step(0.02)
        scheduler.close()
        assert store.counts()["done"] == 1
    (pool,) = pools
    np.testing.assert_array_equal(pool.calibration.gain, gain)
