"""Push one exposure over the frame protocol, optionally with injected faults.

For tests and the demo: :func:`send_exposure` speaks :mod:`daemon.frame_protocol` on a PUSH
socket, and :class:`StreamFaults` makes it misbehave the way a detector link does (lost,
repeated or reordered frames, a corrupt header, a sender that dies before ``end``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from causalscope.daemon.frame_protocol import end_message, frame_message, start_message
from causalscope.models.errors import InputError
from causalscope.models.records import AcquisitionMetadata

__all__ = ["CORRUPT_HEADER", "StreamFaults", "send_exposure"]

#: What a corrupted header is replaced with: not UTF-8, not JSON.
CORRUPT_HEADER = b"\xff\xfe not a header \x00"


@dataclass(frozen=True)
class StreamFaults:
    """Faults :func:`send_exposure` injects.

    Parameters
    ----------
    drop
        Frame indices never sent (``end`` still counts them: they were lost on the way).
    duplicate
        Frame indices sent twice in a row.
    shuffle_seed
        Send the frames in a random order drawn with this seed.
    corrupt
        Frame indices whose header is replaced by :data:`CORRUPT_HEADER`.
    corrupt_start
        Replace the ``start`` header by :data:`CORRUPT_HEADER`.
    stop_before_end
        Never send ``end``, as a sender that crashed.
    """

    drop: tuple[int, ...] = ()
    duplicate: tuple[int, ...] = ()
    shuffle_seed: int | None = None
    corrupt: tuple[int, ...] = ()
    corrupt_start: bool = False
    stop_before_end: bool = False

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "corrupt"):
            values = getattr(self, name)
            if any(not isinstance(i, int) or i < 0 for i in values):
                raise ValueError(f"StreamFaults.{name} must hold frame indices >= 0, got {values}")


def send_exposure(
    socket_or_address: zmq.Socket[bytes] | str,
    exposure_id: str,
    frames: np.ndarray,
    *,
    pixel_size_angstrom: float | None,
    metadata: AcquisitionMetadata | Mapping[str, Any] | None = None,
    faults: StreamFaults | None = None,
    timeout_s: float = 30.0,
) -> int:
    """Send ``(n, h, w)`` frames as one exposure: start, frames, end.

    Parameters
    ----------
    socket_or_address
        A connected PUSH socket (used as it is), or an address to connect a new one to (closed
        afterwards, lingering up to ``timeout_s`` to deliver what is queued).
    exposure_id
        The exposure's id.
    frames
        ``(n, h, w)`` array of one of the protocol's dtypes.
    pixel_size_angstrom
        Sent in the start header (None: unknown).
    metadata
        Acquisition metadata for the start header.
    faults
        What to get wrong; None sends a clean exposure.
    timeout_s
        With an address: how long a send may wait for a receiver.

    Returns
    -------
    int
        Messages sent.

    Raises
    ------
    InputError
        The address is invalid, or nobody took the frames within ``timeout_s``.
    """
    data = np.asarray(frames)
    if data.ndim != 3:
        raise ValueError(f"frames must be (n, h, w), got shape {data.shape}")
    if isinstance(metadata, AcquisitionMetadata):
        meta: dict[str, Any] | None = json.loads(metadata.model_dump_json(exclude_none=True))
    else:
        meta = None if metadata is None else dict(metadata)
    messages = _messages(exposure_id, data, pixel_size_angstrom, meta, faults or StreamFaults())
    if not isinstance(socket_or_address, str):
        _send_all(socket_or_address, messages, "the given socket")
        return len(messages)
    timeout_ms = max(1, int(timeout_s * 1000))
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, timeout_ms)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    try:
        try:
            sock.connect(socket_or_address)
        except zmq.ZMQError as error:
            raise InputError(
                "Bad ZeroMQ address", f"{socket_or_address!r}: {error.strerror}"
            ) from error
        _send_all(sock, messages, socket_or_address)
    finally:
        sock.close()
    return len(messages)


def _messages(
    exposure_id: str,
    data: np.ndarray,
    pixel_size_angstrom: float | None,
    meta: dict[str, Any] | None,
    faults: StreamFaults,
) -> list[list[bytes]]:
    """The exposure's messages in sending order, with ``faults`` applied."""
    n, h, w = data.shape
    messages = [
        start_message(
            exposure_id,
            n_frames=n,
            height=h,
            width=w,
            dtype=data.dtype.newbyteorder("<").name,
            pixel_size_angstrom=pixel_size_angstrom,
            metadata=meta,
        )
    ]
    if faults.corrupt_start:
        messages[0] = [CORRUPT_HEADER]
    order = np.arange(n)
    if faults.shuffle_seed is not None:
        order = np.random.default_rng(faults.shuffle_seed).permutation(n)
    for index in (int(i) for i in order):
        if index in faults.drop:
            continue
        parts = frame_message(exposure_id, index, data[index])
        if index in faults.corrupt:
            parts = [CORRUPT_HEADER, parts[1]]
        messages.extend([parts, parts] if index in faults.duplicate else [parts])
    if not faults.stop_before_end:
        messages.append(end_message(exposure_id, n_frames=n))
    return messages


def _send_all(sock: zmq.Socket[bytes], messages: list[list[bytes]], where: str) -> None:
    for parts in messages:
        try:
            sock.send_multipart(parts)
        except zmq.Again as error:
            raise InputError(
                "Nobody is receiving frames",
                f"no receiver took frames at {where}; is the frame receiver running?",
            ) from error
