"""The directory watcher on real folders with real watchdog observers."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from causalscope.config.acquisition import WatcherSettings
from causalscope.daemon.formats import write_mrc_movie
from causalscope.daemon.sources import DirectoryWatcher, MovieReady, Rejected, SourceEvent
from causalscope.daemon.sources import watcher as watcher_module
from causalscope.models.errors import InputError
from tests.daemon.sources._helpers import assert_empty, take, take_ready, wait_until

# watchdog 7's inotify emitter warns when it registers a folder made by ``mkdir -p`` twice
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

SETTLE_S = 0.2
MakeWatcher = Callable[..., tuple[DirectoryWatcher, "queue.Queue[SourceEvent]"]]


def _movie(path: Path, *, atomic: bool = True, seed: int = 0) -> Path:
    frames = np.random.default_rng(seed).integers(0, 4, size=(3, 32, 32)).astype(np.uint8)
    return write_mrc_movie(path, frames, pixel_size_angstrom=1.0, atomic=atomic)


def _settle_and_empty(watcher: DirectoryWatcher, events: queue.Queue[SourceEvent]) -> None:
    wait_until(lambda: watcher.idle, what="watcher idle")
    assert_empty(events)


@pytest.fixture
def make_watcher(tmp_path: Path) -> Iterator[MakeWatcher]:
    started: list[DirectoryWatcher] = []

    def make(
        directory: Path | None = None, *, ignore: tuple[Path, ...] = (), **overrides: Any
    ) -> tuple[DirectoryWatcher, queue.Queue[SourceEvent]]:
        options: dict[str, Any] = {
            "settle_s": SETTLE_S,
            "metadata_wait_s": 0.3,
            "poll_interval_s": 0.1,
        }
        options.update(overrides)
        events: queue.Queue[SourceEvent] = queue.Queue()
        watcher = DirectoryWatcher(
            directory or tmp_path / "watched", WatcherSettings(**options), events, ignore=ignore
        )
        watcher.start()
        started.append(watcher)
        return watcher, events

    (tmp_path / "watched").mkdir()
    yield make
    for watcher in started:
        watcher.stop()
        watcher.check()


def test_files_present_at_start_are_emitted_including_empty_ones(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    watched = tmp_path / "watched"
    _movie(watched / "a.mrc")
    _movie(watched / "sub" / "b.mrc")
    (watched / "empty.tiff").write_bytes(b"")  # the scheduler quarantines it, not the watcher
    watcher, events = make_watcher()
    got = take(events, 3)
    assert all(isinstance(e, MovieReady) for e in got)
    ready = {e.exposure_id: e for e in got if isinstance(e, MovieReady)}
    assert set(ready) == {"a", "b", "empty"}
    assert ready["b"].movie_path == watched / "sub" / "b.mrc"
    assert all(e.source == "watcher" and e.metadata_path is None for e in ready.values())
    _settle_and_empty(watcher, events)


def test_slowly_written_file_is_emitted_once_after_it_stops_changing(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    settle_s = 0.5  # well above the writer's pauses even on a busy machine
    watcher, events = make_watcher(settle_s=settle_s)
    source = _movie(tmp_path / "staged.mrc")
    data = source.read_bytes()
    target = tmp_path / "watched" / "slow.mrc"
    finished: list[float] = []

    def write_slowly() -> None:
        with target.open("wb") as out:
            for chunk in np.array_split(np.frombuffer(data, dtype=np.uint8), 8):
                out.write(chunk.tobytes())
                out.flush()
                time.sleep(0.12)
        finished.append(time.monotonic())

    writer = threading.Thread(target=write_slowly)
    writer.start()
    event = take_ready(events, timeout_s=10)
    writer.join()
    assert event.exposure_id == "slow"
    assert finished and event.ready_at >= finished[0] + settle_s * 0.9
    assert target.read_bytes() == data
    _settle_and_empty(watcher, events)


def test_renamed_into_place_is_seen_and_hidden_temporaries_are_not(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    watcher, events = make_watcher()
    watched = tmp_path / "watched"
    outside = _movie(tmp_path / "elsewhere" / "moved.tiff", atomic=False)
    os.replace(outside, watched / "moved.tiff")
    _movie(watched / "atomic.mrc")  # written as .atomic.mrc.<hex>.part, then renamed
    (watched / ".hidden.mrc").write_bytes(b"x")
    _movie(watched / ".staging" / "staged.mrc", atomic=False)
    (watched / "notes.txt").write_text("not a movie")
    got = take(events, 2)
    assert {e.exposure_id for e in got} == {"moved", "atomic"}
    assert {e.movie_path for e in got if isinstance(e, MovieReady)} == {
        watched / "moved.tiff",
        watched / "atomic.mrc",
    }
    _settle_and_empty(watcher, events)


def test_epu_layout_pairs_movies_with_their_xml_even_when_it_comes_later(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    watcher, events = make_watcher(metadata_wait_s=5.0)
    data = tmp_path / "watched" / "Images-Disc1" / "GridSquare_1" / "Data"
    data.mkdir(parents=True)  # created after start: the new folders are watched too
    (data / "FoilHole_1_Data_2_3.xml").write_text("<MicroscopeImage/>")
    (data / "FoilHole_1_Data_2_3_fractions.tiff").write_bytes(b"II*\x00movie")
    first = take_ready(events)
    assert first.exposure_id == "FoilHole_1_Data_2_3_fractions"
    assert first.metadata_path == data / "FoilHole_1_Data_2_3.xml"

    movie = data / "FoilHole_1_Data_2_4_fractions.tiff"
    movie.write_bytes(b"II*\x00movie")
    written = time.monotonic()
    time.sleep(3 * SETTLE_S)  # the movie has settled and waits for its XML
    assert events.empty()
    (data / "FoilHole_1_Data_2_4.xml").write_text("<MicroscopeImage/>")
    second = take_ready(events)
    assert second.metadata_path == data / "FoilHole_1_Data_2_4.xml"
    assert second.ready_at - written < 5.0  # paired, not given up on
    _settle_and_empty(watcher, events)


def test_movie_without_metadata_is_emitted_after_the_wait(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    watcher, events = make_watcher(metadata_wait_s=0.5)
    _movie(tmp_path / "watched" / "FoilHole_9_Data_1_1_Fractions.mrc")
    written = time.monotonic()
    event = take_ready(events)
    assert event.metadata_path is None
    assert event.ready_at - written >= SETTLE_S + 0.5 - 0.05
    _settle_and_empty(watcher, events)


def test_serialem_mdoc_is_paired_and_patterns_ignore_case(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    watcher, events = make_watcher()
    watched = tmp_path / "watched"
    (watched / "session_00001.tif.mdoc").write_text("PixelSpacing = 1.0\n")
    (watched / "session_00001.tif").write_bytes(b"II*\x00movie")
    (watched / "UPPER.TIF").write_bytes(b"II*\x00movie")
    got = {e.exposure_id: e for e in take(events, 2) if isinstance(e, MovieReady)}
    assert got["session_00001"].metadata_path == watched / "session_00001.tif.mdoc"
    assert got["UPPER"].metadata_path is None
    _settle_and_empty(watcher, events)


def test_polling_observer_is_used_when_asked(
    tmp_path: Path, make_watcher: MakeWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_inotify() -> None:
        raise AssertionError("the inotify observer must not be used when polling")

    monkeypatch.setattr(watcher_module, "Observer", no_inotify)
    watcher, events = make_watcher(polling=True, poll_interval_s=0.1)
    _movie(tmp_path / "watched" / "polled.mrc")
    (tmp_path / "watched" / "polled.mdoc").write_text("x")
    event = take_ready(events)
    assert (event.exposure_id, event.metadata_path) == (
        "polled",
        tmp_path / "watched" / "polled.mdoc",
    )
    _settle_and_empty(watcher, events)


def test_ignored_folders_and_non_recursive_mode(tmp_path: Path, make_watcher: MakeWatcher) -> None:
    watched = tmp_path / "watched"
    watcher, events = make_watcher(ignore=(watched / "spool",))
    _movie(watched / "spool" / "spooled.mrc")
    _movie(watched / "spool" / "deeper" / "spooled2.mrc")
    _movie(watched / "kept.mrc")
    assert take_ready(events).exposure_id == "kept"
    _settle_and_empty(watcher, events)

    flat = tmp_path / "flat"
    _movie(flat / "sub" / "nested.mrc")
    flat_watcher, flat_events = make_watcher(flat, recursive=False)
    _movie(flat / "sub" / "nested2.mrc")
    _movie(flat / "top.mrc")
    assert take_ready(flat_events).exposure_id == "top"
    _settle_and_empty(flat_watcher, flat_events)


def test_each_movie_is_emitted_once_and_a_reused_id_is_rejected(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    watched = tmp_path / "watched"
    watcher, events = make_watcher()
    movie = _movie(watched / "once.mrc")
    assert take_ready(events).exposure_id == "once"
    with movie.open("ab") as handle:  # touched again after it was emitted
        handle.write(b"more")
    _movie(tmp_path / "replacement.mrc", atomic=False, seed=1).replace(movie)
    _movie(watched / "other" / "once.mrc")  # same stem, another folder
    rejected = take(events)[0]
    assert isinstance(rejected, Rejected)
    assert rejected.code == "duplicate_exposure" and rejected.exposure_id == "once"
    assert str(watched / "other" / "once.mrc") in rejected.reason
    _movie(watched / "sentinel.mrc")
    assert take_ready(events).exposure_id == "sentinel"
    _settle_and_empty(watcher, events)


def test_file_that_vanishes_before_it_settles_is_dropped(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    watcher, events = make_watcher()
    watched = tmp_path / "watched"
    gone = _movie(watched / "gone.mrc")
    gone.rename(tmp_path / "gone.mrc")  # EPU moves files away
    _movie(watched / "sentinel.mrc")
    assert take_ready(events).exposure_id == "sentinel"
    _settle_and_empty(watcher, events)


def test_missing_directory_is_an_input_error(tmp_path: Path) -> None:
    events: queue.Queue[SourceEvent] = queue.Queue()
    watcher = DirectoryWatcher(tmp_path / "nowhere", WatcherSettings(), events)
    with pytest.raises(InputError, match="nowhere"):
        watcher.start()


@pytest.mark.parametrize("polling", [False, True])
def test_stop_joins_quickly(tmp_path: Path, polling: bool) -> None:
    events: queue.Queue[SourceEvent] = queue.Queue()
    settings = WatcherSettings(polling=polling, poll_interval_s=2.0, settle_s=SETTLE_S)
    watcher = DirectoryWatcher(tmp_path, settings, events)
    watcher.start()
    wait_until(lambda: watcher.idle, what="initial scan")
    t0 = time.monotonic()
    watcher.stop()
    assert time.monotonic() - t0 < 1.0
    assert watcher._thread is not None and not watcher._thread.is_alive()
    watcher.check()


def test_an_error_in_the_loop_reaches_check(tmp_path: Path) -> None:
    broken = threading.Event()

    def clock() -> float:
        if broken.is_set():
            raise RuntimeError("clock failed")
        return time.monotonic()

    events: queue.Queue[SourceEvent] = queue.Queue()
    watcher = DirectoryWatcher(tmp_path, WatcherSettings(settle_s=SETTLE_S), events, clock=clock)
    watcher.start()
    watcher.check()
    broken.set()

    def raised() -> bool:
        try:
            watcher.check()
        except RuntimeError:
            return True
        return False

    wait_until(raised, what="the loop's error")
    watcher.stop()
    with pytest.raises(RuntimeError, match="clock failed"):
        watcher.check()
