"""Network weights as bytes: the file format the shipped models share, and their package data.

A weights file is a ``torch.save`` of ``{"format": FORMAT, "config": {...}, "state_dict":
{...}}`` (float32, CPU), read back with ``weights_only=True`` (no code is unpickled). Callers
open files; these helpers take bytes or binary file-like objects. The shipped models and their
JSON training records are package data in ``models/data/``.
"""

from __future__ import annotations

import io
from importlib import resources
from typing import IO, Any

import torch

__all__ = ["read_weights", "shipped_weights", "weights_bytes"]


def weights_bytes(
    model: torch.nn.Module, fmt: str, config: dict[str, Any], target: IO[bytes] | None = None
) -> bytes:
    """Serialise ``model`` and the ``config`` it is rebuilt from as ``fmt``; written to
    ``target`` if given."""
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": fmt, "config": config, "state_dict": state}, buffer)
    data = buffer.getvalue()
    if target is not None:
        target.write(data)
    return data


def read_weights(source: bytes | IO[bytes], fmt: str, *, what: str) -> dict[str, Any]:
    """The ``config`` and ``state_dict`` of a weights file of format ``fmt``; ValueError naming
    ``what`` it should have been when it is not one."""
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        payload: Any = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt data
        raise ValueError(f"not a {what} weights file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        seen = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"not a {what} weights file: format {seen!r}, expected {fmt!r}")
    return payload


def shipped_weights(name: str) -> bytes:
    """The bytes of a weights file shipped in ``models/data/``."""
    return resources.files("causalscope.models").joinpath("data", name).read_bytes()
