"""Weights of a :class:`~models.denoise.unet.UNet` as bytes, and the shipped default model
(the format: :mod:`models.weights`, ``"causalscope-n2n/1"``)."""

from __future__ import annotations

from typing import IO

import torch

from causalscope.models.denoise.unet import UNet
from causalscope.models.weights import read_weights, shipped_weights, weights_bytes

__all__ = ["DEFAULT_WEIGHTS", "default_model", "load_weights", "save_weights"]

_FORMAT = "causalscope-n2n/1"
#: the shipped model's weights and its training record, in ``models/data/``
DEFAULT_WEIGHTS = "n2n_default.pt"


def save_weights(model: UNet, target: IO[bytes] | None = None) -> bytes:
    """Serialise ``model`` (float32, CPU); writes to ``target`` if given, returns the bytes."""
    return weights_bytes(model, _FORMAT, model.config(), target)


def load_weights(source: bytes | IO[bytes], *, device: torch.device | str = "cpu") -> UNet:
    """A :class:`UNet` in eval mode from :func:`save_weights`' bytes or a binary file object."""
    payload = read_weights(source, _FORMAT, what="denoiser")
    model = UNet(tuple(payload["config"]["channels"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def default_model(*, device: torch.device | str = "cpu") -> UNet:
    """The pretrained model shipped in ``models/data/n2n_default.pt``."""
    return load_weights(shipped_weights(DEFAULT_WEIGHTS), device=device)
