"""The frame-stream protocol: how a detector (or the simulator) pushes frames over ZeroMQ.

Transport: the sender's PUSH socket connects to the receiver's PULL socket (the receiver
binds, on 127.0.0.1 unless configured otherwise). Every message is multipart; its first
part is a UTF-8 JSON header with ``"protocol": 1`` and a ``"type"``:

``start``  ``{type, protocol, exposure_id, n_frames, height, width, dtype, pixel_size_angstrom,
           metadata}``: one part. ``metadata`` holds the fields of
           :class:`models.records.AcquisitionMetadata` that the sender knows (may be empty).
``frame``  ``{type, protocol, exposure_id, index, height, width, dtype}`` then a second part:
           the frame's raw bytes, C order, little-endian, ``height * width * itemsize`` long.
``end``    ``{type, protocol, exposure_id, n_frames}``: one part; ``n_frames`` is how many
           frames were sent, so a receiver can tell a lost frame from a short exposure.

Per exposure the order is start, frames 0..n-1, end. ``exposure_id`` is unique in a session
(the simulator uses the movie's file stem). dtypes: ``uint8``, ``uint16``, ``int8``,
``int16``, ``float16``, ``float32``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from causalscope.models.errors import FormatError

__all__ = [
    "ALLOWED_DTYPES",
    "PROTOCOL_VERSION",
    "end_message",
    "frame_message",
    "parse_header",
    "start_message",
]

PROTOCOL_VERSION = 1
ALLOWED_DTYPES = ("uint8", "uint16", "int8", "int16", "float16", "float32")


def _encode(header: dict[str, Any]) -> bytes:
    return json.dumps({"protocol": PROTOCOL_VERSION, **header}, separators=(",", ":")).encode()


def start_message(
    exposure_id: str,
    *,
    n_frames: int,
    height: int,
    width: int,
    dtype: str,
    pixel_size_angstrom: float | None,
    metadata: dict[str, Any] | None = None,
) -> list[bytes]:
    """The parts of a ``start`` message."""
    if dtype not in ALLOWED_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {ALLOWED_DTYPES}")
    return [
        _encode(
            {
                "type": "start",
                "exposure_id": exposure_id,
                "n_frames": n_frames,
                "height": height,
                "width": width,
                "dtype": dtype,
                "pixel_size_angstrom": pixel_size_angstrom,
                "metadata": metadata or {},
            }
        )
    ]


def frame_message(exposure_id: str, index: int, frame: np.ndarray) -> list[bytes]:
    """The parts of a ``frame`` message: header, then the raw little-endian bytes."""
    if frame.ndim != 2:
        raise ValueError(f"a frame must be 2-D, got shape {frame.shape}")
    dtype = frame.dtype.newbyteorder("<")
    if dtype.name not in ALLOWED_DTYPES:
        raise ValueError(f"dtype {frame.dtype} is not one of {ALLOWED_DTYPES}")
    header = {
        "type": "frame",
        "exposure_id": exposure_id,
        "index": index,
        "height": int(frame.shape[0]),
        "width": int(frame.shape[1]),
        "dtype": dtype.name,
    }
    return [_encode(header), np.ascontiguousarray(frame, dtype=dtype).tobytes()]


def end_message(exposure_id: str, *, n_frames: int) -> list[bytes]:
    """The parts of an ``end`` message."""
    return [_encode({"type": "end", "exposure_id": exposure_id, "n_frames": n_frames})]


def parse_header(part: bytes) -> dict[str, Any]:
    """Decode and check a header; FormatError (naming what is wrong) for anything else."""
    try:
        header = json.loads(part.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FormatError(
            "Garbage frame-stream message",
            f"the header is not UTF-8 JSON ({error}); first bytes: {part[:32]!r}",
        ) from error
    if not isinstance(header, dict):
        raise FormatError("Garbage frame-stream message", f"header is not an object: {header!r}")
    if header.get("protocol") != PROTOCOL_VERSION:
        raise FormatError(
            "Unsupported frame-stream protocol",
            f"protocol {header.get('protocol')!r}; this receiver speaks {PROTOCOL_VERSION}",
        )
    kind = header.get("type")
    required = {
        "start": ("exposure_id", "n_frames", "height", "width", "dtype"),
        "frame": ("exposure_id", "index", "height", "width", "dtype"),
        "end": ("exposure_id", "n_frames"),
    }
    if kind not in required:
        raise FormatError("Garbage frame-stream message", f"unknown message type {kind!r}")
    missing = [key for key in required[kind] if key not in header]
    if missing:
        raise FormatError(
            "Garbage frame-stream message", f"{kind} header lacks {', '.join(missing)}: {header}"
        )
    if "dtype" in header and header["dtype"] not in ALLOWED_DTYPES:
        raise FormatError(
            "Garbage frame-stream message",
            f"dtype {header['dtype']!r} is not one of {', '.join(ALLOWED_DTYPES)}",
        )
    return header
