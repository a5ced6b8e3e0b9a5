"""Fixtures of the frame-stream receiver's tests: receivers and PUSH sockets, closed after."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from causalscope.config.acquisition import StreamSettings
from causalscope.daemon.sources import FrameStreamReceiver, SourceEvent
from tests.daemon.sources._stream import ADDRESS, MakeReceiver, Push, Receiver


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
def push() -> Iterator[Push]:
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
