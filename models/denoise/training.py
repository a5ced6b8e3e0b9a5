"""Noise2Noise training (Lehtinen et al., ICML 2018): map one half sum to the other.

The even and odd half sums of a movie carry the same signal and independent shot noise, so a
network trained with a squared loss to predict one from the other learns the expected signal
given its input, with no clean data. Each step draws random crops at the same place of a random
pair, a random flip / 90-degree rotation (the same for input and target), and a random
direction (even -> odd or odd -> even). Each half is normalised by its own robust statistics
over the whole image, exactly as :func:`models.denoise.denoise` does at inference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from causalscope.models.denoise.inference import robust_normalisation
from causalscope.models.denoise.unet import UNet

__all__ = [
    "TrainingReport",
    "noise2noise_step",
    "normalised_pair",
    "random_crops",
    "train_noise2noise",
]


@dataclass
class TrainingReport:
    """What :func:`train_noise2noise` did: per-step losses (normalised units) and counts."""

    steps: int
    crop_px: int
    batch: int
    lr: float
    seed: int
    n_pairs: int
    losses: list[float] = field(default_factory=list)

    @property
    def first_loss(self) -> float:
        """Mean loss over the first tenth of the steps."""
        k = max(1, len(self.losses) // 10)
        return float(sum(self.losses[:k]) / k)

    @property
    def final_loss(self) -> float:
        """Mean loss over the last tenth of the steps."""
        k = max(1, len(self.losses) // 10)
        return float(sum(self.losses[-k:]) / k)


def noise2noise_step(
    model: UNet, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor
) -> float:
    """One optimiser step on ``(n, 1, h, w)`` inputs and targets; returns the MSE loss."""
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs and targets must match: {inputs.shape} vs {targets.shape}")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = torch.mean((model(inputs) - targets) ** 2)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def normalised_pair(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """``(2, h, w)`` float32: each half sum normalised by its own robust median and scale."""
    if even.ndim != 2 or even.shape != odd.shape:
        raise ValueError(
            f"half sums must be (h, w) of equal shape, got {tuple(even.shape)}, {tuple(odd.shape)}"
        )
    out = []
    for half in (even, odd):
        half = torch.as_tensor(half).to(torch.float32)
        median, scale = robust_normalisation(half)
        out.append((half - median) / scale)
    return torch.stack(out)


def random_crops(
    pairs: list[torch.Tensor], n: int, crop_px: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (input, target) crops ``(n, 1, crop_px, crop_px)`` from ``(2, h, w)`` pairs.

    Same place in both halves, a random flip / quarter turn and a random direction.
    """
    inputs, targets = [], []
    for _ in range(n):
        pair = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
        h, w = pair.shape[-2:]
        y = int(torch.randint(h - crop_px + 1, (1,), generator=generator))
        x = int(torch.randint(w - crop_px + 1, (1,), generator=generator))
        crop = pair[:, y : y + crop_px, x : x + crop_px]
        k, flip, swap = (int(v) for v in torch.randint(4, (3,), generator=generator))
        crop = torch.rot90(crop, k, dims=(-2, -1))
        if flip % 2:
            crop = torch.flip(crop, dims=(-1,))
        if swap % 2:
            crop = crop.flip(0)
        inputs.append(crop[0])
        targets.append(crop[1])
    return torch.stack(inputs)[:, None], torch.stack(targets)[:, None]


def train_noise2noise(
    model: UNet,
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    crop_px: int,
    lr: float,
    seed: int,
    batch: int = 8,
) -> TrainingReport:
    """Train ``model`` in place on ``(even, odd)`` half sums ``(h, w)`` (each ``>= crop_px``).

    Adam at ``lr`` with a cosine decay to a tenth of it over ``steps``. Crops are drawn on the
    CPU and moved to the model's device.
    """
    if steps < 0 or batch < 1:
        raise ValueError(f"steps must be >= 0 and batch >= 1, got {steps}, {batch}")
    if crop_px < model.multiple or crop_px % model.multiple:
        raise ValueError(f"crop_px must be a multiple of {model.multiple}, got {crop_px}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    prepared = [normalised_pair(torch.as_tensor(e), torch.as_tensor(o)) for e, o in pairs]
    if not prepared:
        raise ValueError("no training pairs")
    small = [tuple(p.shape[-2:]) for p in prepared if min(p.shape[-2:]) < crop_px]
    if small:
        raise ValueError(f"half sums smaller than crop_px={crop_px}: {small[:3]}")
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    report = TrainingReport(steps, crop_px, batch, lr, seed, len(prepared))
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * step / steps)))
        inputs, targets = random_crops(prepared, batch, crop_px, generator)
        inputs = inputs.to(device=parameter.device, dtype=parameter.dtype)
        targets = targets.to(device=parameter.device, dtype=parameter.dtype)
        report.losses.append(noise2noise_step(model, optimizer, inputs, targets))
    model.eval()
    return report
