"""Weights of a :class:`~models.denoise.unet.UNet` as bytes, and the shipped default model.

The format is a ``torch.save`` of ``{"format": "causalscope-n2n/1", "config": {...},
"state_dict": {...}}``, read back with ``weights_only=True`` (no code is unpickled). Callers
open files; these helpers take bytes or binary file-like objects.
"""

from __future__ import annotations

import io
from importlib import resources
from typing import IO, Any

import torch

from causalscope.models.denoise.unet import UNet

__all__ = ["DEFAULT_WEIGHTS", "default_model", "load_weights", "save_weights"]

_FORMAT = "causalscope-n2n/1"
#: the shipped model's weights and its training record, in ``models/data/``
DEFAULT_WEIGHTS = "n2n_default.pt"


def save_weights(model: UNet, target: IO[bytes] | None = None) -> bytes:
    """Serialise ``model`` (float32, CPU); writes to ``target`` if given, returns the bytes."""
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"format": _FORMAT, "config": model.config(), "state_dict": state}, buffer)
    data = buffer.getvalue()
    if target is not None:
        target.write(data)
    return data


def load_weights(source: bytes | IO[bytes], *, device: torch.device | str = "cpu") -> UNet:
    """A :class:`UNet` in eval mode from :func:`save_weights`' bytes or a binary file object."""
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        payload: Any = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt data
        raise ValueError(f"not a denoiser weights file: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        seen = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"not a denoiser weights file: format {seen!r}, expected {_FORMAT!r}")
    model = UNet(tuple(payload["config"]["channels"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def default_model(*, device: torch.device | str = "cpu") -> UNet:
    """The pretrained model shipped in ``models/data/n2n_default.pt``."""
    data = resources.files("causalscope.models").joinpath("data", DEFAULT_WEIGHTS).read_bytes()
    return load_weights(data, device=device)
