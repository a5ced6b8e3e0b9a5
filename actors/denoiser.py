"""Session fine-tuning of the Noise2Noise denoiser on the session's own half sums.

:class:`DenoiserTrainer` is a plain class (no Ray here; the pipeline wraps or calls it). It
keeps a bounded reservoir of (even, odd) pairs (reservoir sampling, Vitter's algorithm R: every
pair seen has the same chance of being kept, so a long session is not biased to its start or
its end), trains the model a few steps at a time, and hands out its weights as bytes or writes
a checkpoint file atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causalscope.actors._checkpoint import write_atomically
from causalscope.models.denoise import (
    UNet,
    default_model,
    load_weights,
    noise2noise_step,
    normalised_pair,
    random_crops,
    save_weights,
)

__all__ = ["DenoiserTrainer"]


class DenoiserTrainer:
    """Fine-tune a denoiser on a session's (even, odd) half sums.

    Parameters
    ----------
    weights_bytes
        Starting weights (:func:`models.denoise.save_weights`); None starts from the shipped
        default model.
    crop_px, lr, seed
        Training crop edge, Adam learning rate (constant) and random seed.
    capacity
        Pairs kept in the reservoir (each stored normalised, float32, at most
        ``max_side_px`` on a side: about 8 MiB per 1024 x 1024 pair).
    max_side_px
        Larger half sums are cut to a random window of this size before they are stored, so
        that memory stays bounded whatever the detector.
    batch
        Crops per step.
    """

    def __init__(
        self,
        weights_bytes: bytes | None,
        *,
        crop_px: int = 128,
        lr: float = 2e-4,
        seed: int = 0,
        capacity: int = 32,
        max_side_px: int = 1024,
        batch: int = 8,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model: UNet = (
            default_model(device=device)
            if weights_bytes is None
            else load_weights(weights_bytes, device=device)
        )
        m = self.model.multiple
        if crop_px < m or crop_px % m or max_side_px < crop_px:
            raise ValueError(
                f"crop_px must be a multiple of {m} and <= max_side_px, got {crop_px}, "
                f"{max_side_px}"
            )
        if capacity < 1 or batch < 1 or not lr > 0:
            raise ValueError(f"need capacity, batch >= 1 and lr > 0: {capacity}, {batch}, {lr}")
        self.crop_px, self.lr, self.capacity, self.batch = crop_px, lr, capacity, batch
        self.max_side_px = max_side_px
        self.pairs: list[torch.Tensor] = []
        self.seen = 0
        self.steps_done = 0
        self._random = random.Random(seed)
        self._generator = torch.Generator().manual_seed(seed)
        self._optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)

    def add_pair(self, even: Any, odd: Any) -> bool:
        """Offer one exposure's half sums ``(h, w)``; returns whether the reservoir kept it.

        Half sums smaller than ``crop_px`` are rejected with ``ValueError``.
        """
        pair = normalised_pair(torch.as_tensor(even), torch.as_tensor(odd))
        h, w = pair.shape[-2:]
        if min(h, w) < self.crop_px:
            raise ValueError(f"half sums {h} x {w} are smaller than crop_px={self.crop_px}")
        if max(h, w) > self.max_side_px:
            y = self._random.randrange(max(1, h - self.max_side_px + 1))
            x = self._random.randrange(max(1, w - self.max_side_px + 1))
            pair = pair[:, y : y + self.max_side_px, x : x + self.max_side_px].clone()
        self.seen += 1
        if len(self.pairs) < self.capacity:
            self.pairs.append(pair)
            return True
        slot = self._random.randrange(self.seen)
        if slot < self.capacity:
            self.pairs[slot] = pair
            return True
        return False

    def add_pair_files(self, even_path: str, odd_path: str) -> bool:
        """Read an exposure's even and odd half sums (MRC, as the exposure worker wrote them)."""
        import mrcfile

        even = np.asarray(mrcfile.read(even_path), dtype=np.float32)
        odd = np.asarray(mrcfile.read(odd_path), dtype=np.float32)
        return self.add_pair(even, odd)

    def train(self, steps: int) -> dict[str, float]:
        """Run ``steps`` Noise2Noise steps on the reservoir; returns the mean and last loss."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not self.pairs:
            raise ValueError("no pairs yet: call add_pair first")
        parameter = next(self.model.parameters())
        losses = []
        for _ in range(steps):
            inputs, targets = random_crops(self.pairs, self.batch, self.crop_px, self._generator)
            losses.append(
                noise2noise_step(
                    self.model,
                    self._optimizer,
                    inputs.to(parameter.device, parameter.dtype),
                    targets.to(parameter.device, parameter.dtype),
                )
            )
        self.model.eval()
        self.steps_done += steps
        return {
            "loss": float(sum(losses) / len(losses)),
            "last_loss": losses[-1],
            "steps": float(self.steps_done),
            "pairs": float(len(self.pairs)),
        }

    def weights(self) -> bytes:
        """The current weights (:func:`models.denoise.load_weights` reads them)."""
        return save_weights(self.model)

    def checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights to ``path`` atomically; returns the path."""
        return write_atomically(path, self.weights())
