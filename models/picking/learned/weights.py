"""Weights of a :class:`~.network.PickerNet` as bytes, and the shipped default picker.

A ``torch.save`` of ``{"format": "causalscope-picker/1", "config": {...}, "state_dict": {...}}``,
read back with ``weights_only=True``. The shipped model and its JSON training record are
package data in ``models/data/``.
"""

from __future__ import annotations

import io
from importlib import resources
from typing import IO, Any

import torch

from causalscope.models.picking.learned.network import PickerNet

__all__ = ["DEFAULT_PICKER_WEIGHTS", "default_picker", "load_picker", "save_picker"]

_FORMAT = "causalscope-picker/1"
#: the shipped picker's weights (its training record beside it, ``.json``)
DEFAULT_PICKER_WEIGHTS = "picker_default.pt"


def save_picker(model: PickerNet, target: IO[bytes] | None = None) -> bytes:
    """Serialise ``model`` (float32, CPU); writes to ``target`` if given, returns the bytes."""
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": _FORMAT, "config": model.config(), "state_dict": state}, buffer)
    data = buffer.getvalue()
    if target is not None:
        target.write(data)
    return data


def load_picker(source: bytes | IO[bytes], *, device: torch.device | str = "cpu") -> PickerNet:
    """A :class:`PickerNet` in eval mode from :func:`save_picker`'s bytes or a file object."""
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        payload: Any = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt data
        raise ValueError(f"not a picker weights file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        seen = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"not a picker weights file: format {seen!r}, expected {_FORMAT!r}")
    model = PickerNet(tuple(payload["config"]["channels"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def default_picker(*, device: torch.device | str = "cpu") -> PickerNet:
    """The pretrained picker shipped in ``models/data/picker_default.pt``."""
    data = (
        resources.files("causalscope.models").joinpath("data", DEFAULT_PICKER_WEIGHTS).read_bytes()
    )
    return load_picker(data, device=device)
