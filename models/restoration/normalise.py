"""Per-box normalisation of particle images, as RELION's extraction does it."""

from __future__ import annotations

import torch

__all__ = ["normalise_particles"]


def _background_mask(box_px: int, radius_px: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(box_px, device=device, dtype=torch.float32) - box_px // 2
    r2 = coords[:, None] ** 2 + coords[None, :] ** 2
    return r2 > radius_px**2


def normalise_particles(particles: torch.Tensor, *, background_radius_px: float) -> torch.Tensor:
    """Zero mean, unit standard deviation outside a circle, per box (RELION's normalisation).

    ``particles`` ``(..., b, b)``; the circle of ``background_radius_px`` is centred on
    ``(b // 2, b // 2)``, and RELION's default radius is 75 % of half the box.
    """
    box = particles.shape[-1]
    if particles.ndim < 2 or particles.shape[-2] != box:
        raise ValueError(f"particles must be (..., b, b), got {tuple(particles.shape)}")
    mask = _background_mask(box, background_radius_px, particles.device)
    if int(mask.sum()) < 2:
        raise ValueError(
            f"background_radius_px {background_radius_px} leaves < 2 background pixels in a "
            f"{box}-px box"
        )
    background = particles[..., mask]
    mean = background.mean(dim=-1)[..., None, None]
    std = background.std(dim=-1)[..., None, None].clamp(min=1e-12)
    return (particles - mean) / std
