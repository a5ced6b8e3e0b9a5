"""Fourier ring correlation and the resolution at which it crosses a threshold.

The FRC itself is teamtomo's ``torch_fourier_shell_correlation.fourier_ring_correlation``
(rings of one Fourier pixel of the short side, ``min(h, w) // 2 + 1`` of them from 0 to
Nyquist); this module adds the ring frequencies and the crossing.

Note for comparisons of restorations: the FRC normalises each ring separately, so any filter
that multiplies a whole ring by one nonzero real number (a radially symmetric, shift-invariant
linear filter) leaves that ring's FRC unchanged up to its sign. A Wiener filter and a phase
flip therefore differ in FRC only through what varies *within* a ring: the CTF's azimuthal
variation (astigmatism) and its change across the ring's width.
"""

from __future__ import annotations

import math

import torch
from torch_fourier_shell_correlation import fourier_ring_correlation

__all__ = ["fourier_ring_correlation", "frc_resolution_angstrom", "ring_frequencies_per_angstrom"]


def ring_frequencies_per_angstrom(n_rings: int, *, pixel_size_angstrom: float) -> torch.Tensor:
    """Frequencies (1/A) of the ``n_rings`` FRC rings: ``linspace(0, Nyquist, n_rings)``."""
    if n_rings < 2:
        raise ValueError(f"need >= 2 rings, got {n_rings}")
    return torch.linspace(0.0, 0.5 / pixel_size_angstrom, n_rings, dtype=torch.float64)


def frc_resolution_angstrom(
    frc: torch.Tensor, *, pixel_size_angstrom: float, threshold: float = 0.5
) -> float:
    """Resolution (A) beyond which the FRC ``(n_rings,)`` stays below ``threshold``.

    The last downward crossing, interpolated linearly between rings. A micrograph's FRC
    against its clean image dips below 0.5 at low frequency (around 100 A, where the CTF is
    little more than the amplitude contrast) and at the first CTF zeros, then recovers, so the
    first crossing measures the CTF's shape, not the information the image carries. Returns
    the Nyquist resolution if the last ring is at or above ``threshold``, ``inf`` if no ring
    but the origin is.
    """
    if frc.ndim != 1:
        raise ValueError(f"frc must be 1-D (n_rings,), got shape {tuple(frc.shape)}")
    values = frc.detach().to(torch.float64).cpu()
    k = ring_frequencies_per_angstrom(values.numel(), pixel_size_angstrom=pixel_size_angstrom)
    above = torch.nonzero(values[1:] >= threshold).flatten() + 1
    if above.numel() == 0:
        return math.inf
    i = int(above[-1])
    if i == values.numel() - 1:
        return 2.0 * pixel_size_angstrom
    hi, lo = float(values[i]), float(values[i + 1])
    frac = (hi - threshold) / (hi - lo) if hi != lo else 0.0
    return 1.0 / float(k[i] + frac * (k[i + 1] - k[i]))
