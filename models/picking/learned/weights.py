"""Weights of a :class:`~.network.PickerNet` as bytes, and the shipped default picker
(the format: :mod:`models.weights`, ``"causalscope-picker/1"``; the shipped picker's JSON
training record lies beside it in ``models/data/``)."""

from __future__ import annotations

from typing import IO

import torch

from causalscope.models.picking.learned.network import PickerNet
from causalscope.models.weights import read_weights, shipped_weights, weights_bytes

__all__ = ["DEFAULT_PICKER_WEIGHTS", "default_picker", "load_picker", "save_picker"]

_FORMAT = "causalscope-picker/1"
#: the shipped picker's weights (its training record beside it, ``.json``)
DEFAULT_PICKER_WEIGHTS = "picker_default.pt"


def save_picker(model: PickerNet, target: IO[bytes] | None = None) -> bytes:
    """Serialise ``model`` (float32, CPU); writes to ``target`` if given, returns the bytes."""
    return weights_bytes(model, _FORMAT, model.config(), target)


def load_picker(source: bytes | IO[bytes], *, device: torch.device | str = "cpu") -> PickerNet:
    """A :class:`PickerNet` in eval mode from :func:`save_picker`'s bytes or a file object."""
    payload = read_weights(source, _FORMAT, what="picker")
    model = PickerNet(tuple(payload["config"]["channels"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def default_picker(*, device: torch.device | str = "cpu") -> PickerNet:
    """The pretrained picker shipped in ``models/data/picker_default.pt``."""
    return load_picker(shipped_weights(DEFAULT_PICKER_WEIGHTS), device=device)
