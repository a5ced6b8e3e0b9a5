"""Publishing committed rows: a subscriber gets them; one that stops reading never blocks
commits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from causalscope.daemon.store import SessionStore
from tests.daemon.store._records import make_record, warn_flag

LOCAL = "tcp://127.0.0.1:0"


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _subscribe(context: zmq.Context, store: SessionStore, **options: int) -> zmq.Socket:
    """A SUB connected to the store, after the subscription has surely reached the PUB."""
    sub = context.socket(zmq.SUB)
    for option, value in options.items():
        sub.setsockopt(getattr(zmq, option), value)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    assert store.publish_endpoint is not None
    sub.connect(store.publish_endpoint)
    # PUB drops messages until the subscription arrives: publish events until one gets through.
    for _ in range(100):
        store.log_event("hello", "subscriber handshake")
        if sub.poll(50, zmq.POLLIN):
            while sub.poll(50, zmq.POLLIN):
                sub.recv_multipart()
            return sub
    raise AssertionError("the subscription never reached the PUB socket")


def _next(sub: zmq.Socket, topic: bytes) -> dict[str, Any]:
    while sub.poll(2000, zmq.POLLIN):
        got, payload = sub.recv_multipart()
        if got == topic:
            message: dict[str, Any] = json.loads(payload)
            return message
    raise AssertionError(f"no {topic!r} message")


def test_subscriber_receives_the_committed_rows(tmp_path: Path, context: zmq.Context) -> None:
    with SessionStore(tmp_path / "S.duckdb", publish_address=LOCAL) as store:
        assert store.publish_endpoint is not None
        assert store.publish_endpoint.startswith("tcp://127.0.0.1:")
        assert not store.publish_endpoint.endswith(":0")
        sub = _subscribe(context, store)
        store.record_seen("a", movie_path="movies/a.tiff", source="stream")
        record = make_record("a", status="warn", flags=[warn_flag("thick_ice")])
        store.commit_exposure(record, params_hash="p", latency_s=1.25)
        row = _next(sub, b"exposure")
        assert (row["exposure_id"], row["state"], row["gate_status"]) == ("a", "done", "warn")
        assert row["source"] == "stream" and row["latency_s"] == 1.25
        assert row["outputs"]["dose_weighted_sum"] == "out/micrographs/a_DW.mrc"
        assert row["ctf"]["defocus_angstrom"] == 14_500.0
        assert row["motion"]["shifts_px"] == record.motion.shifts_px  # type: ignore[union-attr]
        assert row["flags"] == [
            {
                "code": "thick_ice",
                "severity": "warn",
                "message": "thick_ice seen",
                "value": None,
                "limit_value": None,
            }
        ]
        assert row["seen_at"].count("T") == 1  # ISO text

        # An idempotent re-commit publishes nothing new.
        store.commit_exposure(record, params_hash="p")
        store.quarantine(exposure_id=None, origin="tcp://det:1", code="garbage_message", reason="?")
        quarantined = _next(sub, b"quarantine")
        assert (quarantined["code"], quarantined["exposure_id"]) == ("garbage_message", None)
        store.log_event("retry", "again", attempt=2)
        event = _next(sub, b"event")
        assert (event["kind"], event["data"]) == ("retry", {"attempt": 2})
        store.add_label("a", "accept")
        assert _next(sub, b"label")["label"] == "accept"
        sub.close(linger=0)


def test_a_subscriber_that_stops_reading_never_blocks_commits(
    tmp_path: Path, context: zmq.Context
) -> None:
    n_commits = 600
    # ~12 kB per message, 7 MB in all: several times what the socket buffers between PUB and
    # SUB hold (~3 MB on loopback), so the PUB must drop or block; it must drop.
    records = [make_record(f"e{i:04d}", n_frames=600) for i in range(n_commits)]
    path = tmp_path / "S.duckdb"
    with SessionStore(path, publish_address=LOCAL, publish_high_water_mark=10) as store:
        sub = _subscribe(context, store, RCVHWM=10, RCVBUF=4096)
        for record in records:  # the subscriber reads nothing meanwhile
            assert store.commit_exposure(record, params_hash="p")
        assert store.counts()["done"] == n_commits
        received = 0
        while sub.poll(500, zmq.POLLIN):
            topic, _ = sub.recv_multipart()
            received += topic == b"exposure"
        sub.close(linger=0)
    # PUB dropped what the stalled subscriber could not hold; every commit is in the database.
    assert received < n_commits
    with SessionStore(path) as store:
        counts = store.counts()
    assert (counts["done"], counts["results"]) == (n_commits, n_commits)
