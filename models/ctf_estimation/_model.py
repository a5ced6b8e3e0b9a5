"""Private: the band of spectrum pixels being fitted and the Thon-ring model on it.

Parametrisation (smooth at zero astigmatism, linear in the defocus terms):
``chi(k, theta) = pi lambda k^2 (d + a1 cos 2theta + a2 sin 2theta) - pi/2 Cs lambda^3 k^4 + phi``
with mean defocus ``d``, ``dU = d + A``, ``dV = d - A``, ``A = hypot(a1, a2)`` and the angle of
U from x ``atan2(a2, a1) / 2``; this is :func:`models.ctf.aberration_phase` rewritten. The power
spectrum of the ice-embedded specimen is ``noise + A(k)/2 [1 - m(k) rho(k) cos(2 chi + 2 w)]``
with ``w = atan(Q / sqrt(1 - Q^2))``, the ice's modulation ``m = sinc(lambda k^2 t)`` (uniform
slab of thickness t; see :mod:`models.ctf_estimation.ice`) and the tile window's attenuation
``rho`` (:func:`window_attenuation`). ``ring_model`` returns ``-m rho cos(2 chi + 2 w)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from causalscope.models.units import ANGSTROM_PER_MM, electron_wavelength_angstrom


@dataclass(frozen=True)
class Optics:
    """Fixed optics of one fit."""

    voltage_kv: float
    spherical_aberration_mm: float
    amplitude_contrast: float

    @property
    def wavelength_angstrom(self) -> float:
        return electron_wavelength_angstrom(self.voltage_kv)

    @property
    def cs_angstrom(self) -> float:
        return self.spherical_aberration_mm * ANGSTROM_PER_MM

    @property
    def amplitude_phase_rad(self) -> float:
        q = self.amplitude_contrast
        return math.atan(q / math.sqrt(1.0 - q * q))


@dataclass(frozen=True)
class Band:
    """Half-plane pixels of a centred ``(n, n)`` spectrum between two frequencies.

    Centrosymmetric spectra hold every value twice; the half plane counts each once.
    """

    values: torch.Tensor  # (m,) spectrum values
    k: torch.Tensor  # (m,) |k| in 1/A
    cos2: torch.Tensor  # (m,) cos 2 theta
    sin2: torch.Tensor  # (m,) sin 2 theta
    cos1: torch.Tensor  # (m,) |cos theta|
    sin1: torch.Tensor  # (m,) |sin theta|
    radius_px: torch.Tensor  # (m,) |k| in spectrum pixels
    ring: torch.Tensor  # (m,) integer radial bin (round(radius_px))
    n: int
    pixel_size_angstrom: float

    @functools.cached_property
    def n_rings(self) -> int:
        """Radial bins up to the outermost pixel's (read once per band: on a GPU each read
        waits for the device)."""
        return int(self.ring.max().item()) + 1 if self.ring.numel() else 0

    def subset(self, keep: torch.Tensor) -> Band:
        """The pixels ``keep`` selects (a boolean mask or indices)."""
        if keep.dtype == torch.bool:
            keep = keep.nonzero().squeeze(1)  # once, instead of once per field
        return Band(
            self.values[keep],
            self.k[keep],
            self.cos2[keep],
            self.sin2[keep],
            self.cos1[keep],
            self.sin1[keep],
            self.radius_px[keep],
            self.ring[keep],
            self.n,
            self.pixel_size_angstrom,
        )


def make_band(
    spectrum: torch.Tensor, *, pixel_size_angstrom: float, k_min: float, k_max: float
) -> Band:
    """The half-plane pixels of ``spectrum`` with ``k_min <= |k| <= k_max`` (float64)."""
    n = spectrum.shape[-1]
    idx = torch.arange(n, device=spectrum.device, dtype=torch.float64) - n // 2
    iy, ix = torch.meshgrid(idx, idx, indexing="ij")
    half = (iy > 0) | ((iy == 0) & (ix > 0))
    radius = torch.sqrt(ix * ix + iy * iy)
    k = radius / (n * pixel_size_angstrom)
    keep = half & (k >= k_min) & (k <= k_max)
    theta = torch.atan2(iy[keep], ix[keep])
    r = radius[keep]
    return Band(
        values=spectrum.to(torch.float64)[keep],
        k=k[keep],
        cos2=torch.cos(2 * theta),
        sin2=torch.sin(2 * theta),
        cos1=torch.cos(theta).abs(),
        sin1=torch.sin(theta).abs(),
        radius_px=r,
        ring=torch.round(r).long(),
        n=n,
        pixel_size_angstrom=pixel_size_angstrom,
    )


def phase(
    k: torch.Tensor,
    cos2: torch.Tensor,
    sin2: torch.Tensor,
    params: torch.Tensor,
    optics: Optics,
) -> torch.Tensor:
    """``chi + w`` for parameters ``(..., 4)`` = ``[d, a1, a2, phi_rad]``; ``(..., m)`` on
    ``k``'s device (parameters made on the CPU, as the searches' starting points are, follow)."""
    lam = optics.wavelength_angstrom
    p = params.to(k.device)[..., None, :]
    k2 = k * k
    local = p[..., 0] + p[..., 1] * cos2 + p[..., 2] * sin2
    chi = math.pi * lam * local * k2 - 0.5 * math.pi * optics.cs_angstrom * lam**3 * k2 * k2
    return chi + p[..., 3] + optics.amplitude_phase_rad


def ring_lag_px(band: Band, params: torch.Tensor, optics: Optics) -> torch.Tensor:
    """Real-space lag (pixels) of the local Thon-ring oscillation ``cos 2chi``: |d(2chi)/dk|/2pi."""
    lam = optics.wavelength_angstrom
    params = params.to(band.k.device)
    local = params[0] + params[1] * band.cos2 + params[2] * band.sin2
    slope = (
        2.0 * math.pi * lam * band.k * local
        - 2.0 * math.pi * optics.cs_angstrom * lam**3 * band.k**3
    )
    return (2.0 * slope).abs() / (2.0 * math.pi) / band.pixel_size_angstrom


def window_attenuation(
    lag_x_px: torch.Tensor, lag_y_px: torch.Tensor, window: torch.Tensor
) -> torch.Tensor:
    """Normalised autocorrelation of a separable tile window at real-space lags (pixels).

    A periodogram of a tile with window ``w`` is the true spectrum convolved with ``|W|^2``;
    a locally sinusoidal ring pattern ``cos(2 pi x0 . k)`` survives that convolution multiplied
    by the window's normalised autocorrelation at the lag ``x0``. For a rectangular window this
    is ``(1 - |x|/box)(1 - |y|/box)``: rings 4 px apart keep 75 % of their contrast.
    """
    box = window.shape[0]
    energy = float((window**2).sum())
    auto = torch.stack([(window[s:] * window[: box - s]).sum() for s in range(box)]) / energy
    # the lags' device: the window may have been made elsewhere
    auto = torch.cat([auto, auto.new_zeros(1)]).to(lag_x_px.device)

    def interp(lag: torch.Tensor) -> torch.Tensor:
        x = lag.clamp(0, box - 1e-6)
        i0 = torch.floor(x).long()
        f = x - i0
        return auto[i0] * (1 - f) + auto[i0 + 1] * f

    return interp(lag_x_px) * interp(lag_y_px)


def ring_model(
    band: Band,
    params: torch.Tensor,
    optics: Optics,
    *,
    attenuation: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """``-rho m cos(2 (chi + w))`` on the band for parameters ``(..., 4)``; ``(..., m)``."""
    return -attenuation * torch.cos(2.0 * phase(band.k, band.cos2, band.sin2, params, optics))


def ring_sums(values: torch.Tensor, ring: torch.Tensor, n_rings: int) -> torch.Tensor:
    """Sum of ``(..., m)`` values per radial bin: ``(..., n_rings)``."""
    flat = values.reshape(-1, values.shape[-1])
    out = flat.new_zeros(flat.shape[0], n_rings)
    out.index_add_(1, ring, flat)
    return out.reshape(*values.shape[:-1], n_rings)


def moving_average(profile: torch.Tensor, half_width: torch.Tensor | int) -> torch.Tensor:
    """Centred running mean of a 1-D profile with per-bin half width (edges shrink)."""
    n = profile.shape[-1]
    hw = torch.as_tensor(half_width, device=profile.device).long().expand(n)
    csum = torch.cat([profile.new_zeros(1), torch.cumsum(profile, 0)])
    idx = torch.arange(n, device=profile.device)
    lo = (idx - hw).clamp(min=0)
    hi = (idx + hw + 1).clamp(max=n)
    return (csum[hi] - csum[lo]) / (hi - lo).to(profile.dtype)
