"""Gold-standard Fourier shell correlation of two half-maps, unmasked and masked.

The FSC itself is teamtomo's ``fourier_shell_correlation`` (``b // 2 + 1`` shells from 0 to
Nyquist). The masked FSC is corrected for the mask's own correlation by phase randomisation
(Chen et al. 2013, as RELION's post-processing does): beyond the shell where the unmasked FSC
falls below 0.8, both half-maps' phases are randomised, the masked FSC of those is the mask's
contribution, and ``FSC_true = (FSC_masked - FSC_random) / (1 - FSC_random)`` there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch_fourier_shell_correlation import fourier_shell_correlation

from causalscope.models.restoration.frc import ring_frequencies_per_angstrom

__all__ = [
    "HalfMapFsc",
    "fsc_resolution_angstrom",
    "half_map_fsc",
    "soft_spherical_mask",
]

_RANDOMISE_BELOW = 0.8


def soft_spherical_mask(box_px: int, *, radius_px: float, edge_px: float = 6.0) -> torch.Tensor:
    """``(b, b, b)`` mask: 1 inside ``radius_px`` of the centre ``b // 2``, a raised-cosine
    edge ``edge_px`` wide, 0 beyond."""
    if radius_px <= 0 or edge_px < 0:
        raise ValueError(f"radius_px must be > 0 and edge_px >= 0, got {radius_px}, {edge_px}")
    axis = torch.arange(box_px, dtype=torch.float32) - box_px // 2
    r = torch.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    if edge_px == 0:
        return (r <= radius_px).float()
    t = ((r - radius_px) / edge_px).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def fsc_resolution_angstrom(
    curve: torch.Tensor, *, pixel_size_angstrom: float, threshold: float = 0.143
) -> float:
    """Resolution (A) where the FSC ``(s,)`` first falls below ``threshold``, interpolated
    linearly between shells; the Nyquist resolution if it never does, ``inf`` if the first
    shell beyond the origin is already below."""
    if curve.ndim != 1 or curve.numel() < 3:
        raise ValueError(f"curve must be 1-D with >= 3 shells, got shape {tuple(curve.shape)}")
    values = curve.detach().to(torch.float64).cpu()
    k = ring_frequencies_per_angstrom(values.numel(), pixel_size_angstrom=pixel_size_angstrom)
    below = torch.nonzero(values[1:] < threshold).flatten() + 1
    if below.numel() == 0:
        return 2.0 * pixel_size_angstrom
    i = int(below[0])
    if i == 1:
        return math.inf
    hi, lo = float(values[i - 1]), float(values[i])
    frac = (hi - threshold) / (hi - lo) if hi != lo else 0.0
    return 1.0 / float(k[i - 1] + frac * (k[i] - k[i - 1]))


@dataclass(frozen=True)
class HalfMapFsc:
    """The FSC of two half-maps (``(s,)`` curves, shell ``i`` at ``i / b`` cycles per pixel)
    and the resolutions (A) where they cross 0.143 and 0.5."""

    unmasked: torch.Tensor
    masked: torch.Tensor
    pixel_size_angstrom: float

    def resolution_angstrom(self, threshold: float = 0.143, *, masked: bool = True) -> float:
        curve = self.masked if masked else self.unmasked
        return fsc_resolution_angstrom(
            curve, pixel_size_angstrom=self.pixel_size_angstrom, threshold=threshold
        )


def _randomise_phases(
    volume: torch.Tensor, from_shell: int, generator: torch.Generator
) -> torch.Tensor:
    b, device = volume.shape[-1], volume.device
    transform = torch.fft.rfftn(volume)
    kz = torch.fft.fftfreq(b, device=device)[:, None, None] * b
    ky = torch.fft.fftfreq(b, device=device)[None, :, None] * b
    kx = torch.fft.rfftfreq(b, device=device)[None, None, :] * b
    shells = torch.sqrt(kz**2 + ky**2 + kx**2)
    # drawn on the CPU's generator and moved: the same phases whatever the maps' device
    phases = (torch.rand(transform.shape, generator=generator) * 2 * math.pi).to(device)
    randomised = transform.abs() * torch.polar(torch.ones_like(phases), phases)
    transform = torch.where(shells >= from_shell, randomised, transform)
    return torch.fft.irfftn(transform, s=volume.shape)


def half_map_fsc(
    half_a: torch.Tensor,
    half_b: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    mask: torch.Tensor | None = None,
    seed: int = 0,
) -> HalfMapFsc:
    """Unmasked and (with ``mask``) phase-randomisation-corrected masked FSC of two
    ``(b, b, b)`` half-maps. Without a mask the masked curve is the unmasked one."""
    if half_a.shape != half_b.shape or half_a.ndim != 3:
        raise ValueError(
            f"half-maps must be two (b, b, b) cubes of one shape, got {tuple(half_a.shape)} "
            f"and {tuple(half_b.shape)}"
        )
    a, b = half_a.float(), half_b.float()
    unmasked = fourier_shell_correlation(a, b)
    if mask is None:
        return HalfMapFsc(unmasked, unmasked, pixel_size_angstrom)
    if mask.shape != a.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from the maps' {tuple(a.shape)}")
    mask = mask.to(a.device)  # soft_spherical_mask makes it on the CPU
    masked = fourier_shell_correlation(a * mask, b * mask)
    below = torch.nonzero(unmasked[1:] < _RANDOMISE_BELOW).flatten()
    if below.numel():
        start = int(below[0]) + 1
        generator = torch.Generator().manual_seed(seed)
        random_a = _randomise_phases(a, start, generator)
        random_b = _randomise_phases(b, start, generator)
        noise = fourier_shell_correlation(random_a * mask, random_b * mask)
        corrected = (masked - noise) / (1 - noise).clamp(min=1e-6)
        shells = torch.arange(len(masked), device=masked.device)
        masked = torch.where(shells >= start, corrected, masked)
    return HalfMapFsc(unmasked, masked, pixel_size_angstrom)
