"""Private: the simulator's PUSH socket, sending exposures frame by frame at a detector's pace."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from causalscope.models.errors import InputError
from causalscope.models.records import AcquisitionMetadata

__all__ = ["FrameSender"]


class FrameSender:
    """A PUSH socket that sends exposures frame by frame (protocol: daemon.frame_protocol)."""

    def __init__(self, address: str) -> None:
        import zmq

        self._zmq = zmq
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._socket = context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.LINGER, 2000)
        self._socket.setsockopt(zmq.SNDHWM, 1000)
        self._socket.setsockopt(zmq.SNDTIMEO, 30_000)
        try:
            self._socket.connect(address)
        except zmq.ZMQError as error:
            self._socket.close(linger=0)
            raise InputError("Bad ZeroMQ address", f"{address!r}: {error}") from error
        self._address = address

    def send_exposure(
        self,
        exposure_id: str,
        frames: np.ndarray,
        metadata: AcquisitionMetadata,
        seconds: float,
        base: Any,
    ) -> None:
        from causalscope.daemon.frame_protocol import end_message, frame_message, start_message

        n, h, w = frames.shape
        meta = json.loads(metadata.model_dump_json(exclude_none=True))
        self._send(
            start_message(
                exposure_id,
                n_frames=n,
                height=h,
                width=w,
                dtype=frames.dtype.name,
                pixel_size_angstrom=base.pixel_size_angstrom,
                metadata=meta,
            )
        )
        for i in range(n):
            self._send(frame_message(exposure_id, i, frames[i]))
            if seconds:
                time.sleep(seconds / n)
        self._send(end_message(exposure_id, n_frames=n))

    def _send(self, parts: list[bytes]) -> None:
        try:
            self._socket.send_multipart(parts)
        except self._zmq.Again as error:
            raise InputError(
                "Nobody is receiving frames",
                f"no receiver took frames at {self._address} for 30 s; is `causalscope watch "
                f"--zmq {self._address}` running?",
            ) from error

    def close(self) -> None:
        self._socket.close()
