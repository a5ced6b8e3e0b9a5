"""The frame-stream receiver's spool, restart, stop and thread errors, on real ZeroMQ sockets."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from causalscope.config.acquisition import StreamSettings
from causalscope.daemon.bench._live import SmallFilesystemUnavailable, fill, small_filesystem
from causalscope.daemon.formats import read_movie
from causalscope.daemon.sources import (
    FrameStreamReceiver,
    MovieReady,
    StreamFaults,
    send_exposure,
)
from causalscope.daemon.sources import stream as stream_module
from causalscope.models.errors import InputError
from tests.daemon.sources._helpers import (
    assert_empty,
    take,
    take_ready,
    take_rejected,
    wait_until,
)
from tests.daemon.sources._stream import (
    ADDRESS,
    MakeReceiver,
    good_follows,
    make_frames,
)


def test_spooled_exposures_are_emitted_again_on_restart(
    tmp_path: Path, make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    spool = tmp_path / "spool"
    first, events = make_receiver(spool)
    sock = push(first.endpoint)
    frames = make_frames()
    send_exposure(
        sock, "known", frames, pixel_size_angstrom=0.9, faults=StreamFaults(duplicate=(1,))
    )
    send_exposure(
        sock, "unknown_apix", frames, pixel_size_angstrom=None, metadata={"voltage_kv": 200}
    )
    known, unknown = take(events, 2)
    assert isinstance(unknown, MovieReady) and unknown.pixel_size_angstrom is None
    assert any("pixel size unknown" in p for p in unknown.problems)
    assert unknown.metadata is not None and unknown.metadata.voltage_kv == 200
    first.stop()
    (spool / "orphan.json").write_text("{}")  # crashed before its movie was written
    (spool / ".known.mrc.1234abcd.part").write_bytes(b"half")

    second, restarted = make_receiver(spool)
    again = {e.exposure_id: e for e in take(restarted, 2) if isinstance(e, MovieReady)}
    assert set(again) == {"known", "unknown_apix"}
    assert isinstance(known, MovieReady)
    assert again["known"].frames is None and again["known"].pixel_size_angstrom == 0.9
    assert again["known"].problems == known.problems and again["known"].source == "stream"
    assert again["unknown_apix"].pixel_size_angstrom is None
    assert again["unknown_apix"].metadata == unknown.metadata
    assert np.array_equal(read_movie(again["known"].movie_path), frames)
    assert second.stats["restored"] == 2
    sock2 = push(second.endpoint)
    send_exposure(sock2, "known", frames, pixel_size_angstrom=0.9)
    assert take_rejected(restarted).code == "duplicate_exposure"
    good_follows(sock2, restarted)
    assert_empty(restarted)


def test_unreadable_spool_record_is_rejected_on_restart(
    tmp_path: Path, make_receiver: MakeReceiver
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "broken.json").write_text("{not json")
    (spool / "broken.mrc").write_bytes(b"")
    _, events = make_receiver(spool)
    rejected = take_rejected(events)
    assert (rejected.code, rejected.exposure_id) == ("unreadable_file", "broken")
    assert rejected.origin == str(spool / "broken.json")


def test_stop_joins_quickly_and_reports_open_exposures(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    send_exposure(
        sock,
        "open",
        make_frames(),
        pixel_size_angstrom=1.0,
        faults=StreamFaults(stop_before_end=True),
    )
    wait_until(lambda: receiver.stats["frames"] == 3, what="frames received")
    t0 = time.monotonic()
    receiver.stop()
    assert time.monotonic() - t0 < 1.0
    assert receiver._thread is not None and not receiver._thread.is_alive()
    rejected = take_rejected(events, timeout_s=0.1)
    assert (rejected.code, rejected.exposure_id) == ("incomplete_exposure", "open")
    assert "receiver stopped" in rejected.reason


def test_an_error_in_the_thread_reaches_check(
    tmp_path: Path, push: Callable[[str], zmq.Socket[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the spool")

    monkeypatch.setattr(stream_module, "spool_exposure", broken)
    receiver = FrameStreamReceiver(
        StreamSettings(), queue.Queue(), spool_dir=tmp_path / "spool", address=ADDRESS
    )
    receiver.start()
    try:
        send_exposure(push(receiver.endpoint), "doomed", make_frames(), pixel_size_angstrom=1.0)
        wait_until(lambda: receiver._error is not None, what="the thread's error")
        with pytest.raises(RuntimeError, match="a bug in the spool"):
            receiver.check()
    finally:
        receiver.stop()


def test_a_full_spool_disk_keeps_the_exposure_until_space_returns(
    tmp_path: Path, make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    """A real full disk (a 1 MB tmpfs, where this machine allows mounting one): the exposure
    waits in memory, the receiver keeps receiving, and it is spooled and emitted once space
    returns; one still waiting when the receiver stops is rejected with the reason."""
    try:
        mount = small_filesystem(tmp_path / "disk", 1)
        disk = mount.__enter__()
    except SmallFilesystemUnavailable as error:
        pytest.skip(str(error))
    try:
        filler = fill(disk)
        receiver, events = make_receiver(spool=disk / "spool")
        sock = push(receiver.endpoint)
        frames = make_frames(seed=3)
        send_exposure(sock, "waits", frames, pixel_size_angstrom=1.0)
        wait_until(lambda: receiver.stats["frames"] == 3, what="frames received")
        time.sleep(0.3)
        assert_empty(events)
        receiver.check()  # still receiving: the full disk did not end the thread
        filler.unlink()
        ready = take_ready(events, timeout_s=5.0)
        assert ready.exposure_id == "waits" and ready.movie_path.is_file()
        assert np.array_equal(read_movie(ready.movie_path), frames)
        filler = fill(disk)
        send_exposure(sock, "stranded", frames, pixel_size_angstrom=1.0)
        wait_until(lambda: receiver.stats["frames"] == 6, what="frames received")
        time.sleep(0.2)
        receiver.stop()
        rejected = take_rejected(events, timeout_s=1.0)
        assert (rejected.code, rejected.exposure_id) == ("spool_failed", "stranded")
        assert "No space left on device" in rejected.reason
    finally:
        mount.__exit__(None, None, None)


def test_binding_a_taken_endpoint_is_an_input_error(
    tmp_path: Path, make_receiver: MakeReceiver
) -> None:
    receiver, _ = make_receiver()
    clash = FrameStreamReceiver(
        StreamSettings(), queue.Queue(), spool_dir=tmp_path / "other", address=receiver.endpoint
    )
    with pytest.raises(InputError, match="Cannot bind"):
        clash.start()
