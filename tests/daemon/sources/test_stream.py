"""The frame-stream receiver on real ZeroMQ sockets bound to random ports."""

from __future__ import annotations

import json
import queue
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import zmq

from causalscope.config.acquisition import StreamSettings
from causalscope.daemon.formats import read_movie
from causalscope.daemon.frame_protocol import end_message, frame_message, start_message
from causalscope.daemon.sources import (
    FrameStreamReceiver,
    MovieReady,
    Rejected,
    SourceEvent,
    StreamFaults,
    send_exposure,
    stream_metadata,
)
from causalscope.daemon.sources import spool as spool_module
from causalscope.models.errors import InputError
from causalscope.models.records import AcquisitionMetadata
from tests.daemon.sources._helpers import (
    assert_empty,
    take,
    take_ready,
    take_rejected,
    wait_until,
)

ADDRESS = "tcp://127.0.0.1:0"
Receiver = tuple[FrameStreamReceiver, "queue.Queue[SourceEvent]"]
MakeReceiver = Callable[..., Receiver]


def _frames(seed: int = 0, dtype: str = "uint16", n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 100, size=(n, 32, 32)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=(n, 32, 32), endpoint=True).astype(dtype)


class _SpoolCheckingQueue(queue.Queue[SourceEvent]):
    """Records, at the moment of each put, whether the spooled files already existed."""

    def __init__(self) -> None:
        super().__init__()
        self.spooled_at_put: list[bool] = []

    def put(self, item: SourceEvent, block: bool = True, timeout: float | None = None) -> None:
        if isinstance(item, MovieReady):
            json_path = item.movie_path.with_suffix(".json")
            self.spooled_at_put.append(item.movie_path.is_file() and json_path.is_file())
        super().put(item, block, timeout)


@pytest.fixture
def make_receiver(tmp_path: Path) -> Iterator[MakeReceiver]:
    started: list[FrameStreamReceiver] = []

    def make(
        spool: Path | None = None,
        events: queue.Queue[SourceEvent] | None = None,
        **overrides: Any,
    ) -> Receiver:
        options: dict[str, Any] = {"receive_timeout_s": 5.0}
        options.update(overrides)
        events = events if events is not None else queue.Queue()
        receiver = FrameStreamReceiver(
            StreamSettings(**options),
            events,
            spool_dir=spool or tmp_path / "spool",
            address=ADDRESS,
        )
        receiver.start()
        started.append(receiver)
        return receiver, events

    yield make
    for receiver in started:
        receiver.stop()
        receiver.check()


@pytest.fixture
def push() -> Iterator[Callable[[str], zmq.Socket[bytes]]]:
    sockets: list[zmq.Socket[bytes]] = []

    def connect(endpoint: str) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, 5000)
        sock.connect(endpoint)
        sockets.append(sock)
        return sock

    yield connect
    for sock in sockets:
        sock.close()


def _good_follows(sock: zmq.Socket[bytes], events: queue.Queue[SourceEvent]) -> None:
    """After any fault, a clean exposure is still received intact."""
    frames = _frames(seed=99)
    send_exposure(sock, "good_after", frames, pixel_size_angstrom=1.0)
    ready = take_ready(events)
    assert ready.exposure_id == "good_after" and ready.problems == ()
    assert ready.frames is not None and np.array_equal(ready.frames, frames)


def test_endpoint_resolves_the_random_port(make_receiver: MakeReceiver) -> None:
    receiver, _ = make_receiver()
    match = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", receiver.endpoint)
    assert match and int(match.group(1)) > 0


def test_unstarted_receiver_has_no_endpoint(tmp_path: Path) -> None:
    receiver = FrameStreamReceiver(StreamSettings(), queue.Queue(), spool_dir=tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        _ = receiver.endpoint


def test_clean_exposure_is_bit_exact_and_spooled_before_it_is_emitted(
    tmp_path: Path, make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    events = _SpoolCheckingQueue()
    receiver, _ = make_receiver(events=events)
    frames = _frames()
    metadata = AcquisitionMetadata(
        source_path="", source_format="epu", voltage_kv=300.0, dose_e_per_a2=40.0
    )
    send_exposure(
        push(receiver.endpoint), "FoilHole_1", frames, pixel_size_angstrom=0.83, metadata=metadata
    )
    ready = take_ready(events)
    assert events.spooled_at_put == [True]
    assert ready.exposure_id == "FoilHole_1" and ready.source == "stream"
    assert ready.frames is not None and ready.frames.dtype == np.uint16
    assert np.array_equal(ready.frames, frames)
    assert ready.pixel_size_angstrom == 0.83 and ready.problems == ()
    assert ready.metadata is not None
    assert ready.metadata.voltage_kv == 300.0 and ready.metadata.n_frames == 3
    assert ready.metadata.source_path == receiver.endpoint
    spool = tmp_path / "spool"
    assert ready.movie_path == spool / "FoilHole_1.mrc"
    assert np.array_equal(read_movie(ready.movie_path), frames)
    with mrcfile.open(ready.movie_path, header_only=True) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(0.83, rel=1e-6)
    record = json.loads((spool / "FoilHole_1.json").read_text())
    assert record["start"]["metadata"]["voltage_kv"] == 300.0
    assert record["start"]["pixel_size_angstrom"] == 0.83 and record["n_frames"] == 3
    assert sorted(p.name for p in spool.iterdir()) == ["FoilHole_1.json", "FoilHole_1.mrc"]
    stats = receiver.stats
    assert (stats["messages"], stats["frames"], stats["exposures"]) == (5, 3, 1)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "float16", "float32"])
def test_every_protocol_dtype_round_trips(
    dtype: str, make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    frames = _frames(seed=3, dtype=dtype)
    send_exposure(push(receiver.endpoint), f"x_{dtype}", frames, pixel_size_angstrom=1.2)
    ready = take_ready(events)
    assert ready.frames is not None and ready.frames.dtype == np.dtype(dtype)
    assert np.array_equal(ready.frames, frames)
    assert np.array_equal(read_movie(ready.movie_path).astype(dtype), frames)


def test_missing_frames_are_rejected_naming_them(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    frames = _frames(n=5)
    send_exposure(sock, "lossy", frames, pixel_size_angstrom=1.0, faults=StreamFaults(drop=(1, 3)))
    rejected = take_rejected(events)
    assert (rejected.exposure_id, rejected.code) == ("lossy", "missing_frames")
    assert "frames 1, 3 of 5" in rejected.reason
    assert rejected.origin == receiver.endpoint
    assert not (receiver._spool / "lossy.mrc").exists()
    _good_follows(sock, events)


def test_duplicated_and_out_of_order_frames_are_placed_and_reported(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    frames = _frames(n=6)
    send_exposure(
        sock, "dup", frames, pixel_size_angstrom=1.0, faults=StreamFaults(duplicate=(0, 4))
    )
    dup = take_ready(events)
    assert dup.frames is not None and np.array_equal(dup.frames, frames)
    assert dup.problems == ("frames 0, 4 arrived more than once (2 extra copies ignored)",)
    faults = StreamFaults(shuffle_seed=1)
    order = np.random.default_rng(1).permutation(6)
    late = sum(int(i) < int(order[:k].max()) for k, i in enumerate(order) if k)
    assert late > 0
    send_exposure(sock, "shuffled", frames, pixel_size_angstrom=1.0, faults=faults)
    shuffled = take_ready(events)
    assert shuffled.frames is not None and np.array_equal(shuffled.frames, frames)
    assert shuffled.problems == (f"{late} frames arrived out of order (placed by index)",)
    stats = receiver.stats
    assert (stats["duplicates"], stats["out_of_order"]) == (2, late)
    _good_follows(sock, events)


def test_messages_of_an_exposure_never_started_are_rejected_once(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    frames = _frames()
    for i in range(3):
        sock.send_multipart(frame_message("ghost", i, frames[i]))
    sock.send_multipart(end_message("ghost", n_frames=3))
    sock.send_multipart(end_message("phantom", n_frames=3))
    ghost, phantom = take(events, 2)
    assert isinstance(ghost, Rejected) and isinstance(phantom, Rejected)
    assert (ghost.exposure_id, ghost.code) == ("ghost", "unknown_exposure")
    assert "frame 0 of exposure ghost" in ghost.reason
    assert (phantom.exposure_id, phantom.code) == ("phantom", "unknown_exposure")
    _good_follows(sock, events)
    assert receiver.stats["discarded"] == 3


def test_garbage_is_rejected_with_the_parsers_reason(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    start = start_message(
        "g", n_frames=1, height=32, width=32, dtype="uint16", pixel_size_angstrom=1.0
    )
    frame = frame_message("g", 0, _frames(n=1)[0])
    wrong_protocol = json.dumps({"protocol": 99, "type": "start", "exposure_id": "g"}).encode()
    sock.send_multipart([np.random.default_rng(5).bytes(64)])
    sock.send_multipart([b'{"protocol": 1, "type": "start"'])
    sock.send_multipart([wrong_protocol])
    sock.send_multipart([*frame, b"extra"])
    sock.send_multipart([start[0], b"stray"])
    sock.send_multipart([json.dumps({"protocol": 1, "type": "end"}).encode()])
    got = take(events, 6)
    assert all(isinstance(e, Rejected) and e.code == "garbage_message" for e in got)
    reasons = [e.reason for e in got if isinstance(e, Rejected)]
    assert "not UTF-8 JSON" in reasons[0] and "not UTF-8 JSON" in reasons[1]
    assert "protocol 99" in reasons[2]
    assert "frame message of exposure 'g' has 3 parts; expected 2" in reasons[3]
    assert "start message of exposure 'g' has 2 parts; expected 1" in reasons[4]
    assert "end header lacks exposure_id, n_frames" in reasons[5]
    _good_follows(sock, events)
    assert receiver.stats["rejected"] == 6


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"exposure_id": "../evil"}, "not a safe file name"),
        ({"exposure_id": ".hidden"}, "not a safe file name"),
        ({"exposure_id": 7}, "not a safe file name"),
        ({"n_frames": 0}, "n_frames must be an integer >= 1"),
        ({"height": -2}, "height must be an integer >= 1"),
        ({"width": True}, "width must be an integer >= 1"),
        ({"pixel_size_angstrom": -1.0}, "pixel_size_angstrom must be a positive number"),
        ({"metadata": [1, 2]}, "metadata must be an object"),
    ],
)
def test_bad_start_values_are_garbage(
    header: dict[str, Any],
    reason: str,
    tmp_path: Path,
    make_receiver: MakeReceiver,
    push: Callable[[str], zmq.Socket[bytes]],
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    start = json.loads(
        start_message(
            "ok", n_frames=1, height=32, width=32, dtype="uint16", pixel_size_angstrom=1.0
        )[0]
    )
    sock.send_multipart([json.dumps({**start, **header}).encode()])
    rejected = take_rejected(events)
    assert rejected.code == "garbage_message" and reason in rejected.reason
    _good_follows(sock, events)
    assert not list(tmp_path.rglob("*evil*"))
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == [
        "good_after.json",
        "good_after.mrc",
    ]


def test_too_many_frames_are_rejected(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver(max_exposure_frames=4)
    sock = push(receiver.endpoint)
    send_exposure(sock, "long", _frames(n=5), pixel_size_angstrom=1.0)
    rejected = take_rejected(events)
    assert (rejected.exposure_id, rejected.code) == ("long", "too_many_frames")
    assert "5 frames; at most 4" in rejected.reason
    frames = _frames(n=3)
    sock.send_multipart(
        start_message(
            "over", n_frames=2, height=32, width=32, dtype="uint16", pixel_size_angstrom=1
        )
    )
    for i in range(3):
        sock.send_multipart(frame_message("over", i, frames[i]))
    sock.send_multipart(end_message("over", n_frames=3))
    over = take_rejected(events)
    assert (over.exposure_id, over.code) == ("over", "too_many_frames")
    assert "frame index 2 of exposure over, but start declared 2 frames" in over.reason
    _good_follows(sock, events)
    assert receiver.stats["discarded"] >= 5  # the rest of both exposures


def test_frame_shape_mismatch_is_rejected(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    start = start_message(
        "s", n_frames=2, height=32, width=32, dtype="uint16", pixel_size_angstrom=1.0
    )
    sock.send_multipart(start)
    sock.send_multipart(frame_message("s", 0, np.zeros((16, 16), dtype=np.uint16)))
    shape = take_rejected(events)
    assert (shape.code, shape.exposure_id) == ("frame_shape_mismatch", "s")
    assert "is 16x16 uint16; start declared 32x32 uint16" in shape.reason
    sock.send_multipart(start)  # a new start after a rejection opens the exposure afresh
    header, payload = frame_message("s", 0, np.zeros((32, 32), dtype=np.uint16))
    sock.send_multipart([header, payload[:100]])
    short = take_rejected(events)
    assert short.code == "frame_shape_mismatch" and "has 100 bytes" in short.reason
    _good_follows(sock, events)


def test_second_start_rejects_the_open_exposure_and_assembles_the_new_one(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    frames = _frames()
    send_exposure(
        sock,
        "again",
        frames,
        pixel_size_angstrom=1.0,
        faults=StreamFaults(drop=(1, 2), stop_before_end=True),
    )
    send_exposure(sock, "again", frames, pixel_size_angstrom=1.0)
    rejected = take_rejected(events)
    assert (rejected.code, rejected.exposure_id) == ("incomplete_exposure", "again")
    assert "1 of 3 frames received" in rejected.reason
    ready = take_ready(events)
    assert ready.frames is not None and np.array_equal(ready.frames, frames)


def test_an_exposure_resent_after_it_was_emitted_is_a_duplicate(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    send_exposure(sock, "twice", _frames(), pixel_size_angstrom=1.0)
    take_ready(events)
    send_exposure(sock, "twice", _frames(seed=1), pixel_size_angstrom=1.0)
    rejected = take_rejected(events)
    assert (rejected.code, rejected.exposure_id) == ("duplicate_exposure", "twice")
    _good_follows(sock, events)
    assert np.array_equal(read_movie(receiver._spool / "twice.mrc"), _frames())


def test_corrupt_frame_header_is_garbage_then_the_frame_is_missing(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    send_exposure(sock, "c", _frames(), pixel_size_angstrom=1.0, faults=StreamFaults(corrupt=(1,)))
    garbage, missing = take(events, 2)
    assert isinstance(garbage, Rejected) and garbage.code == "garbage_message"
    assert isinstance(missing, Rejected) and missing.code == "missing_frames"
    assert "frames 1 of 3" in missing.reason
    _good_follows(sock, events)


def test_silent_open_exposure_times_out(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver(receive_timeout_s=0.3)
    sock = push(receiver.endpoint)
    send_exposure(
        sock,
        "stalled",
        _frames(),
        pixel_size_angstrom=1.0,
        faults=StreamFaults(stop_before_end=True),
    )
    t0 = time.monotonic()
    rejected = take_rejected(events)
    assert (rejected.code, rejected.exposure_id) == ("incomplete_exposure", "stalled")
    assert "no message for 0.3 s with 3 of 3 frames received" in rejected.reason
    assert time.monotonic() - t0 < 2.0
    sock.send_multipart(end_message("stalled", n_frames=3))  # too late: discarded, not reported
    _good_follows(sock, events)
    assert receiver.stats["discarded"] == 1


def test_spooled_exposures_are_emitted_again_on_restart(
    tmp_path: Path, make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    spool = tmp_path / "spool"
    first, events = make_receiver(spool)
    sock = push(first.endpoint)
    frames = _frames()
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
    _good_follows(sock2, restarted)
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
        sock, "open", _frames(), pixel_size_angstrom=1.0, faults=StreamFaults(stop_before_end=True)
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
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module, "write_mrc_movie", disk_full)
    receiver = FrameStreamReceiver(
        StreamSettings(), queue.Queue(), spool_dir=tmp_path / "spool", address=ADDRESS
    )
    receiver.start()
    try:
        send_exposure(push(receiver.endpoint), "doomed", _frames(), pixel_size_angstrom=1.0)
        wait_until(lambda: receiver._error is not None, what="the thread's error")
        with pytest.raises(InputError, match="No space left on device"):
            receiver.check()
    finally:
        receiver.stop()


def test_binding_a_taken_endpoint_is_an_input_error(
    tmp_path: Path, make_receiver: MakeReceiver
) -> None:
    receiver, _ = make_receiver()
    clash = FrameStreamReceiver(
        StreamSettings(), queue.Queue(), spool_dir=tmp_path / "other", address=receiver.endpoint
    )
    with pytest.raises(InputError, match="Cannot bind"):
        clash.start()


def test_send_exposure_to_an_address(make_receiver: MakeReceiver) -> None:
    receiver, events = make_receiver()
    frames = _frames()
    sent = send_exposure(receiver.endpoint, "by_address", frames, pixel_size_angstrom=1.0)
    assert sent == 5
    ready = take_ready(events)
    assert ready.frames is not None and np.array_equal(ready.frames, frames)


def test_stream_faults_reject_negative_indices() -> None:
    with pytest.raises(ValueError, match="drop"):
        StreamFaults(drop=(-1,))


def test_stream_metadata_keeps_what_it_can() -> None:
    header = {"n_frames": 3, "pixel_size_angstrom": 1.1}
    assert stream_metadata({**header, "metadata": {}}, origin="tcp://x:1") == (None, [])
    metadata, problems = stream_metadata(
        {
            **header,
            "metadata": {
                "voltage_kv": "lots",
                "spherical_aberration_mm": 2.7,
                "source_format": "serialem",
                "detector_serial": 1234,
                "extra": {"Operator": "ana"},
            },
        },
        origin="tcp://x:1",
    )
    assert metadata is not None
    assert metadata.source_path == "tcp://x:1" and metadata.source_format == "epu"
    assert metadata.voltage_kv is None and metadata.spherical_aberration_mm == 2.7
    assert metadata.pixel_size_angstrom == 1.1 and metadata.n_frames == 3
    assert metadata.extra == {
        "Operator": "ana",
        "detector_serial": "1234",
        "source_format": "serialem",
    }
    assert len(problems) == 1 and problems[0].startswith("metadata voltage_kv='lots' is invalid")


def test_a_start_too_large_for_memory_is_rejected_without_allocating(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    huge = start_message(
        "huge", n_frames=2000, height=65536, width=65536, dtype="float32", pixel_size_angstrom=1
    )
    sock.send_multipart(huge)
    rejected = take_rejected(events)
    assert (rejected.code, rejected.exposure_id) == ("too_many_frames", "huge")
    assert "cannot hold 2000 frames of 65536x65536 float32" in rejected.reason
    _good_follows(sock, events)
