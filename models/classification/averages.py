"""Class averages from the accumulated sums: the CTF-weighted (Wiener) average and the FRC.

For particles ``X_i`` with transfer ``CTF_i`` (``|CTF_i|`` for phase-flipped data) assigned
with weights ``w_i``, the regularised least-squares average of each Fourier coefficient is

    A(f) = sum_i w_i CTF_i(f) X_i(f) / (sum_i w_i CTF_i(f)^2 + 1 / SSNR(f))

with ``SSNR`` the spectral signal-to-noise ratio of one particle (signal power before the CTF
over noise power; RELION's ``tau^2 / sigma^2``). The SSNR comes from the FRC of the two
half-set averages: the average of all particles has ``SNR = 2 FRC / (1 - FRC)`` (the
half-sets' ``FRC / (1 - FRC)`` doubled) and ``sum w CTF^2`` times one particle's SSNR, so
``1 / SSNR = ring_mean(sum w CTF^2) / SNR``.
"""

from __future__ import annotations

import math

import torch

from causalscope.models.classification._grids import Grid

__all__ = [
    "frc_first_crossing_angstrom",
    "half_set_frc",
    "mass_centre_px",
    "snr_from_frc",
    "wiener_average",
    "wiener_from_snr",
]

_MIN_SNR = 1e-3


def wiener_average(num: torch.Tensor, den: torch.Tensor, ssnr: torch.Tensor) -> torch.Tensor:
    """``num / (den + 1 / ssnr)``: the CTF-weighted average (module docstring).

    ``num`` ``sum w CTF X``, ``den`` ``sum w CTF^2``, ``ssnr`` one particle's spectral SNR;
    all broadcast together.
    """
    if torch.any(ssnr <= 0):
        raise ValueError("ssnr must be positive")
    return num / (den + 1.0 / ssnr)


def wiener_from_snr(
    num: torch.Tensor, den: torch.Tensor, snr: torch.Tensor, grid: Grid
) -> torch.Tensor:
    """The average :func:`wiener_average` of sums ``num``, ``den`` ``(..., b, b//2+1)`` whose
    full average has the SNR ``snr`` ``(..., n_rings)`` per ring: one particle's SSNR is
    ``snr`` over the ring mean of ``den`` (module docstring)."""
    den_ring = grid.ring_mean(den).mean(-1).clamp(min=1e-12)
    ssnr = (snr / den_ring[..., None])[..., grid.ring.clamp(max=grid.n_rings - 1)]
    return wiener_average(num, den, ssnr)


def snr_from_frc(frc: torch.Tensor) -> torch.Tensor:
    """SNR of the full average from the half-set FRC ``(..., n_rings)``: ``2 FRC / (1 - FRC)``.

    The FRC is made non-increasing first (a running minimum from low to high frequency), so
    that noise beyond the resolution never adds high-frequency power; at least 1e-3. Ring 0
    (the mean, one coefficient, whose FRC is +-1 by its sign alone: the normalisation makes
    it arbitrary) takes no part and is given ring 1's SNR: a class whose half-set means had
    opposite signs had SNR 1e-3 at every ring, a blank average (one of 50 simulated classes,
    26 ice blobs, then selected as good).
    """
    clamped = frc.clamp(max=0.999)
    monotone = torch.cummin(clamped[..., 1:], dim=-1).values
    monotone = torch.cat([monotone[..., :1], monotone], dim=-1)
    return (2.0 * monotone / (1.0 - monotone)).clamp(min=_MIN_SNR)


def half_set_frc(
    num: torch.Tensor, den: torch.Tensor, grid: Grid, *, epsilon: float = 1e-3
) -> torch.Tensor:
    """``(..., n_rings)`` FRC of the two half-set averages ``num[..., h] / den[..., h]``.

    ``num``, ``den`` ``(..., 2, b, b//2+1)``; each half is divided by its ``den`` plus
    ``epsilon`` times its ring mean (to keep CTF zeros finite).
    """
    floor = grid.ring_mean(den).mean(-1, keepdim=True)[..., None]
    halves = num / (den + epsilon * floor.clamp(min=1e-12))
    a, b = halves[..., 0, :, :], halves[..., 1, :, :]
    cross = grid.ring_mean((a * b.conj()).real)
    power = grid.ring_mean(a.abs() ** 2) * grid.ring_mean(b.abs() ** 2)
    return cross / power.clamp(min=1e-30).sqrt()


def frc_first_crossing_angstrom(
    frc: torch.Tensor, *, pixel_size_angstrom: float, threshold: float = 0.143
) -> float:
    """Resolution (A) where the FRC ``(n_rings,)`` first falls below ``threshold``.

    The first crossing, not the last (:func:`models.restoration.frc.frc_resolution_angstrom`
    takes the last one for micrographs, whose FRC dips at CTF zeros): a CTF-corrected class
    average has no such dips, and the first crossing is robust to the noise of small classes.
    Interpolated between rings (ring ``i`` at ``i / (b apix)``); ``inf`` if ring 1 is already
    below, the Nyquist resolution if no ring is.
    """
    values = frc.detach().to(torch.float64).cpu()
    n = values.numel()
    box = 2 * (n - 1)
    below = torch.nonzero(values[1:] < threshold).flatten()
    if below.numel() == 0:
        return 2.0 * pixel_size_angstrom
    i = int(below[0]) + 1
    if i == 1:
        return math.inf
    hi, lo = float(values[i - 1]), float(values[i])
    ring = i - 1 + (hi - threshold) / (hi - lo)
    return box * pixel_size_angstrom / ring


def mass_centre_px(images: torch.Tensor) -> torch.Tensor:
    """``(K, 2)`` ``[x, y]`` centre of the positive mass of each of ``images`` ``(K, b, b)``
    within ``0.45 b`` of the box centre ``b // 2``, relative to that centre."""
    b = images.shape[-1]
    coords = torch.arange(b, dtype=torch.float32, device=images.device) - b // 2
    mass = images.clamp(min=0) * (coords[:, None] ** 2 + coords[None, :] ** 2 < (0.45 * b) ** 2)
    total = mass.sum((-2, -1)).clamp(min=1e-12)
    cx = (mass * coords[None, None, :]).sum((-2, -1)) / total
    cy = (mass * coords[None, :, None]).sum((-2, -1)) / total
    return torch.stack([cx, cy], -1)
