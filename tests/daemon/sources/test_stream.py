"""The frame-stream receiver on real ZeroMQ sockets bound to random ports."""

from __future__ import annotations

import json
import queue
import re
import time
from collections.abc import Callable
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
    Rejected,
    StreamFaults,
    send_exposure,
    stream_metadata,
)
from causalscope.models.records import AcquisitionMetadata
from tests.daemon.sources._helpers import (
    take,
    take_ready,
    take_rejected,
)
from tests.daemon.sources._stream import (
    MakeReceiver,
    SpoolCheckingQueue,
    good_follows,
    make_frames,
)


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
    events = SpoolCheckingQueue()
    receiver, _ = make_receiver(events=events)
    frames = make_frames()
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
    frames = make_frames(seed=3, dtype=dtype)
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
    frames = make_frames(n=5)
    send_exposure(sock, "lossy", frames, pixel_size_angstrom=1.0, faults=StreamFaults(drop=(1, 3)))
    rejected = take_rejected(events)
    assert (rejected.exposure_id, rejected.code) == ("lossy", "missing_frames")
    assert "frames 1, 3 of 5" in rejected.reason
    assert rejected.origin == receiver.endpoint
    assert not (receiver._spool / "lossy.mrc").exists()
    good_follows(sock, events)


def test_duplicated_and_out_of_order_frames_are_placed_and_reported(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    frames = make_frames(n=6)
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
    good_follows(sock, events)


def test_messages_of_an_exposure_never_started_are_rejected_once(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    frames = make_frames()
    for i in range(3):
        sock.send_multipart(frame_message("ghost", i, frames[i]))
    sock.send_multipart(end_message("ghost", n_frames=3))
    sock.send_multipart(end_message("phantom", n_frames=3))
    ghost, phantom = take(events, 2)
    assert isinstance(ghost, Rejected) and isinstance(phantom, Rejected)
    assert (ghost.exposure_id, ghost.code) == ("ghost", "unknown_exposure")
    assert "frame 0 of exposure ghost" in ghost.reason
    assert (phantom.exposure_id, phantom.code) == ("phantom", "unknown_exposure")
    good_follows(sock, events)
    assert receiver.stats["discarded"] == 3


def test_garbage_is_rejected_with_the_parsers_reason(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    start = start_message(
        "g", n_frames=1, height=32, width=32, dtype="uint16", pixel_size_angstrom=1.0
    )
    frame = frame_message("g", 0, make_frames(n=1)[0])
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
    good_follows(sock, events)
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
    good_follows(sock, events)
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
    send_exposure(sock, "long", make_frames(n=5), pixel_size_angstrom=1.0)
    rejected = take_rejected(events)
    assert (rejected.exposure_id, rejected.code) == ("long", "too_many_frames")
    assert "5 frames; at most 4" in rejected.reason
    frames = make_frames(n=3)
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
    good_follows(sock, events)
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
    good_follows(sock, events)


def test_second_start_rejects_the_open_exposure_and_assembles_the_new_one(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    frames = make_frames()
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
    send_exposure(sock, "twice", make_frames(), pixel_size_angstrom=1.0)
    take_ready(events)
    send_exposure(sock, "twice", make_frames(seed=1), pixel_size_angstrom=1.0)
    rejected = take_rejected(events)
    assert (rejected.code, rejected.exposure_id) == ("duplicate_exposure", "twice")
    good_follows(sock, events)
    assert np.array_equal(read_movie(receiver._spool / "twice.mrc"), make_frames())


def test_corrupt_frame_header_is_garbage_then_the_frame_is_missing(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver()
    sock = push(receiver.endpoint)
    send_exposure(
        sock, "c", make_frames(), pixel_size_angstrom=1.0, faults=StreamFaults(corrupt=(1,))
    )
    garbage, missing = take(events, 2)
    assert isinstance(garbage, Rejected) and garbage.code == "garbage_message"
    assert isinstance(missing, Rejected) and missing.code == "missing_frames"
    assert "frames 1 of 3" in missing.reason
    good_follows(sock, events)


def test_silent_open_exposure_times_out(
    make_receiver: MakeReceiver, push: Callable[[str], zmq.Socket[bytes]]
) -> None:
    receiver, events = make_receiver(receive_timeout_s=0.3)
    sock = push(receiver.endpoint)
    send_exposure(
        sock,
        "stalled",
        make_frames(),
        pixel_size_angstrom=1.0,
        faults=StreamFaults(stop_before_end=True),
    )
    t0 = time.monotonic()
    rejected = take_rejected(events)
    assert (rejected.code, rejected.exposure_id) == ("incomplete_exposure", "stalled")
    assert "no message for 0.3 s with 3 of 3 frames received" in rejected.reason
    assert time.monotonic() - t0 < 2.0
    sock.send_multipart(end_message("stalled", n_frames=3))  # too late: discarded, not reported
    good_follows(sock, events)
    assert receiver.stats["discarded"] == 1


def test_send_exposure_to_an_address(make_receiver: MakeReceiver) -> None:
    receiver, events = make_receiver()
    frames = make_frames()
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
    good_follows(sock, events)
