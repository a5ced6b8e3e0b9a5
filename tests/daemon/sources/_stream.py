"""Helpers of the frame-stream receiver's tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import queue
from collections.abc import Callable

import numpy as np
import zmq

from causalscope.daemon.sources import FrameStreamReceiver, MovieReady, SourceEvent, send_exposure
from tests.daemon.sources._helpers import take_ready

__all__ = [
    "ADDRESS",
    "MakeReceiver",
    "Push",
    "Receiver",
    "SpoolCheckingQueue",
    "good_follows",
    "make_frames",
]

ADDRESS = "tcp://127.0.0.1:0"
Receiver = tuple[FrameStreamReceiver, "queue.Queue[SourceEvent]"]
MakeReceiver = Callable[..., Receiver]
Push = Callable[[str], zmq.Socket[bytes]]


def make_frames(seed: int = 0, dtype: str = "uint16", n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 100, size=(n, 32, 32)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=(n, 32, 32), endpoint=True).astype(dtype)


class SpoolCheckingQueue(queue.Queue[SourceEvent]):
    """Records, at the moment of each put, whether the spooled files already existed."""

    def __init__(self) -> None:
        super().__init__()
        self.spooled_at_put: list[bool] = []

    def put(self, item: SourceEvent, block: bool = True, timeout: float | None = None) -> None:
        if isinstance(item, MovieReady):
            json_path = item.movie_path.with_suffix(".json")
            self.spooled_at_put.append(item.movie_path.is_file() and json_path.is_file())
        super().put(item, block, timeout)


def good_follows(sock: zmq.Socket[bytes], events: queue.Queue[SourceEvent]) -> None:
    """After any fault, a clean exposure is still received intact."""
    frames = make_frames(seed=99)
    send_exposure(sock, "good_after", frames, pixel_size_angstrom=1.0)
    ready = take_ready(events)
    assert ready.exposure_id == "good_after" and ready.problems == ()
    assert ready.frames is not None and np.array_equal(ready.frames, frames)
