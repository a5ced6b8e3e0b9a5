"""Radial (ring) bookkeeping on the rfft grid, shared by the SSNR fit and the filters."""

from __future__ import annotations

import torch

from causalscope.models.ctf import frequency_grid


def frequency_magnitude(
    image_shape: tuple[int, int], *, pixel_size_angstrom: float, device: torch.device | str
) -> torch.Tensor:
    """``|k|`` (1/Angstrom) on the ``rfft2`` grid of an ``(h, w)`` image, float32."""
    kx, ky = frequency_grid(image_shape, pixel_size_angstrom=pixel_size_angstrom, device=device)
    return torch.sqrt(kx * kx + ky * ky)


def ring_index(
    image_shape: tuple[int, int], *, pixel_size_angstrom: float, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ring of every ``rfft2`` pixel (rings one Fourier pixel of the short side wide).

    Returns ``(index, ring_frequency_per_angstrom)``: an ``(h, w // 2 + 1)`` long tensor and the
    frequency at the centre of each ring, ``i / (min(h, w) * pixel_size_angstrom)``.
    """
    k = frequency_magnitude(image_shape, pixel_size_angstrom=pixel_size_angstrom, device=device)
    step = 1.0 / (min(image_shape) * pixel_size_angstrom)
    index = torch.round(k / step).long()
    n_rings = int(index.max().item()) + 1
    return index, torch.arange(n_rings, device=device, dtype=torch.float64) * step


def ring_mean(values: torch.Tensor, index: torch.Tensor, n_rings: int) -> torch.Tensor:
    """Mean of ``values`` ``(..., h, w')`` over each ring of ``index``: ``(..., n_rings)``.

    The rfft half plane counts the columns ``0 < x < w/2`` once for two conjugate pixels; both
    halves hold equal power for a real image, so the plain half-plane mean is unbiased.
    """
    flat = values.reshape(*values.shape[:-2], -1).to(torch.float64)
    idx = index.reshape(-1)
    sums = torch.zeros(*flat.shape[:-1], n_rings, dtype=torch.float64, device=values.device)
    sums.index_add_(-1, idx, flat)
    counts = torch.bincount(idx, minlength=n_rings).to(torch.float64).clamp(min=1.0)
    return sums / counts
