"""Cramér–Rao bound of a periodogram's CTF fit: :func:`ctf_cramer_rao`, :func:`whittle_profiles`.

Whittle model: ``P(k) = |FFT(image)(k)|^2 / n^2`` of an ``n x n`` image is, at the independent
half-plane frequencies (``kx >= 0``; on the ``kx = 0`` and Nyquist columns one of each pair
``+-ky``; no DC or self-conjugate points), independent exponentials of mean ``mu = B(|k|) +
E(|k|) sin^2(chi + w)``, ``chi + w`` = :func:`models.ctf_estimation._model.phase` at ``[d, a1, a2,
phi]`` (``dU, dV = d +- hypot(a1, a2)``, angle of U from x ``atan2(a2, a1) / 2``, as in
:class:`models.ctf_estimation.CtfEstimate`). The Fisher information of ``(d, a1, a2)`` (phase
shift fixed) is ``sum_k d_i mu d_j mu / mu^2``. The 1/n^2 makes ``E`` and ``B`` intensive (power
spectral densities per pixel): one pair of profiles serves every size; sds scale as 1/n."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from causalscope.models.ctf_estimation._model import Optics, phase

__all__ = ["CtfBound", "ctf_cramer_rao", "whittle_profiles"]


@dataclass(frozen=True)
class CtfBound:
    """Cramér–Rao sds of mean defocus, ``dU - dV`` (A) and angle (deg; None without astigmatism)
    from ``n_frequencies`` in the band; ``fisher``: ``(3, 3)`` of ``(d, a1, a2)`` (1/A^2)."""

    defocus_sd_angstrom: float
    astigmatism_sd_angstrom: float
    angle_sd_deg: float | None
    n_frequencies: int
    fisher: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values (sds rounded to 3 decimals), without the Fisher matrix."""
        sds = (self.defocus_sd_angstrom, self.astigmatism_sd_angstrom, self.angle_sd_deg)
        names = ("defocus_sd_angstrom", "astigmatism_sd_angstrom", "angle_sd_deg")
        out = {name: None if v is None else round(v, 3) for name, v in zip(names, sds, strict=True)}
        return {**out, "n_frequencies": self.n_frequencies}


def _params(d_u: float, d_v: float, angle_deg: float) -> torch.Tensor:
    """``[d, a1, a2, phi]`` of :func:`models.ctf_estimation._model.phase` (no phase shift)."""
    half, two = 0.5 * (d_u - d_v), math.radians(2.0 * angle_deg)
    mean = 0.5 * (d_u + d_v)
    return torch.tensor([mean, half * math.cos(two), half * math.sin(two), 0.0]).double()


def _rfft_grid(n: int, apix: float) -> tuple[Tensor, Tensor]:
    """``[kx, ky]`` (1/A) of the ``rfft2`` layout, flattened, and which are independent (on the
    ``kx = 0`` and ``n/2`` columns, ``+-ky`` are one conjugate pair: only ``0 < ky < n/2``)."""
    index = torch.fft.fftfreq(n, dtype=torch.float64) * n, torch.arange(n // 2 + 1).double()
    iy, ix = torch.meshgrid(*index, indexing="ij")
    independent = ((ix > 0) & (ix < n // 2)) | ((iy > 0) & (iy < n // 2))
    return torch.stack([ix, iy], dim=-1).reshape(-1, 2) / (n * apix), independent.flatten()


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``numpy.interp``: linear, constant past the ends."""
    i = torch.searchsorted(xp, x.clamp(xp[0], xp[-1])).clamp(1, xp.numel() - 1)
    f = ((x - xp[i - 1]) / (xp[i] - xp[i - 1])).clamp(0.0, 1.0)
    return fp[i - 1] * (1 - f) + fp[i] * f


def _polar(freqs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    theta = torch.atan2(freqs[:, 1], freqs[:, 0])
    return torch.linalg.vector_norm(freqs, dim=-1), torch.cos(2 * theta), torch.sin(2 * theta)


def _mu_jac(f: Tensor, p: Tensor, optics: Optics, e: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``mu`` ``(m,)`` and ``d mu / d(d, a1, a2)`` ``(m, 3)`` at frequencies ``f`` ``(m, 2)``."""
    k, cos2, sin2 = _polar(f)
    chi = phase(k, cos2, sin2, p, optics)
    dchi = math.pi * optics.wavelength_angstrom * k * k  # d chi / d d
    basis = torch.stack([torch.ones_like(cos2), cos2, sin2], dim=-1)
    return b + e * torch.sin(chi) ** 2, (e * torch.sin(2 * chi) * dchi)[:, None] * basis


def ctf_cramer_rao(
    size_px: int,
    *,
    pixel_size_angstrom: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    defocus_angle_deg: float,
    signal: torch.Tensor,
    background: torch.Tensor,
    profile_k: torch.Tensor,
    min_resolution_angstrom: float = 20.0,
    max_resolution_angstrom: float = 4.0,
) -> CtfBound:
    """Cramér–Rao bound of mean defocus, ``dU - dV`` and angle from a ``size_px^2`` periodogram.

    ``signal``, ``background``: ``E`` and ``B`` (see the module) at ``profile_k`` (increasing,
    1/A), interpolated linearly onto the grid, constant past the ends; ``B > 0``. ``size_px``:
    even. Delta-method sds from ``C = I^-1``: ``sqrt(C_dd)``, ``2 sqrt(g C_aa g)`` with ``g =
    (a1, a2) / A`` and ``sqrt(p C_aa p) / (2 A)`` with ``p`` perpendicular to ``g`` (at ``A =
    0``: ``2 sqrt(tr C_aa / 2)`` and None).
    """
    k_p, e_p, b_p = (v.to(torch.float64).flatten() for v in (profile_k, signal, background))
    if size_px <= 0 or size_px % 2 or pixel_size_angstrom <= 0:
        raise ValueError(f"size_px {size_px!r} must be even and > 0, pixel size > 0")
    lengths = (k_p.numel(), e_p.numel(), b_p.numel())
    if not lengths[0] == lengths[1] == lengths[2] >= 2 or bool((k_p.diff() <= 0).any()):
        raise ValueError(f"profile lengths differ or k does not increase: {lengths}")
    if bool((b_p <= 0).any()):
        raise ValueError(f"background must be positive, min {float(b_p.min())!r}")
    freqs, independent = _rfft_grid(size_px, pixel_size_angstrom)
    k = torch.linalg.vector_norm(freqs, dim=-1)
    band = (k >= 1.0 / min_resolution_angstrom) & (k <= 1.0 / max_resolution_angstrom)
    freqs, k = freqs[independent & band], k[independent & band]
    if freqs.shape[0] < 3:
        raise ValueError(f"band {min_resolution_angstrom!r}-{max_resolution_angstrom!r} A is empty")
    optics = Optics(voltage_kv, spherical_aberration_mm, amplitude_contrast)
    params = _params(defocus_u_angstrom, defocus_v_angstrom, defocus_angle_deg)
    mu, jac = _mu_jac(freqs, params, optics, _interp(k, k_p, e_p), _interp(k, k_p, b_p))
    if bool((mu <= 0).any()):
        raise ValueError(f"model spectrum not positive (min {float(mu.min())!r}): check signal")
    scaled = jac / mu[:, None]
    fisher = scaled.T @ scaled
    cov = torch.linalg.inv(fisher)
    a1, a2 = float(params[1]), float(params[2])
    half, block = math.hypot(a1, a2), cov[1:, 1:]
    astig_sd, angle_sd = 2.0 * float(torch.trace(block) / 2.0) ** 0.5, None
    if half > 1e-9:
        g = torch.tensor([[a1, a2], [-a2, a1]], dtype=torch.float64) / half
        along, perp = (float(v) ** 0.5 for v in (g @ block @ g.T).diagonal())
        astig_sd, angle_sd = 2.0 * along, math.degrees(perp / (2.0 * half))
    return CtfBound(float(cov[0, 0]) ** 0.5, astig_sd, angle_sd, int(freqs.shape[0]), fisher)


def whittle_profiles(
    expected_power: torch.Tensor,
    floor: torch.Tensor | float,
    *,
    pixel_size_angstrom: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    defocus_angle_deg: float,
    n_bins: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Radial ``(k, E, B)`` for :func:`ctf_cramer_rao` from a mean noise-free periodogram.

    ``expected_power``: ``(n, n // 2 + 1)`` (``rfft2``) ``|FFT|^2 / n^2`` averaged over noise-free
    images; ``floor``: white-noise variance per pixel (Poisson: the mean count), a scalar. Least
    squares (each pixel one sample) of ``c(k) + E(k) sin^2(chi + w)`` at the true parameters,
    ``c`` and ``E`` linear in ``|k|`` between knots (the interpolation of :func:`ctf_cramer_rao`).
    ``c`` is fitted, not forced to 0: thick ice, particles at several heights and the
    periodogram's own window damp the rings, leaving power ``A (1 - m) / 2`` that is not
    modulated (:mod:`models.ctf_estimation.ice`). ``B = floor + max(c, 0)``, ``E = max(E, 0)``.
    Knots (``n_bins`` None): the first maximum of ``sin^2(chi + w)`` at the mean defocus (the
    pixels inside, where the particles' form factor dominates, are left out; the profiles are
    constant there), every zero beyond (one ring per interval: ``c`` and ``E`` separate), at
    least 2 px apart, and the largest ``|k|``; ``n_bins``: that many uniform intervals from 0
    (ill-conditioned where one holds less than a ring). Returns knots (1/A), E, B (float64).
    """
    n, floor_value = expected_power.shape[0], float(torch.as_tensor(floor).reshape(()))
    if expected_power.shape != (n, n // 2 + 1) or n % 2 or floor_value <= 0:
        shape = tuple(expected_power.shape)
        raise ValueError(f"need (n, n//2+1), n even, floor > 0: {shape}, floor {floor_value!r}")
    optics = Optics(voltage_kv, spherical_aberration_mm, amplitude_contrast)
    params = _params(defocus_u_angstrom, defocus_v_angstrom, defocus_angle_deg)
    freqs = _rfft_grid(n, pixel_size_angstrom)[0][1:]
    values = expected_power.to(torch.float64).reshape(-1)[1:]
    k = torch.linalg.vector_norm(freqs, dim=-1)
    k_end = float(k.max())
    if n_bins is None:
        fine = torch.linspace(0.0, k_end, 20 * n, dtype=torch.float64)
        zero = torch.zeros_like(fine)
        order = torch.floor(phase(fine, zero, zero, params, optics) / (0.5 * math.pi))
        cross = (fine[1:][order[1:] != order[:-1]]).tolist()
        knots = cross[:1] or [0.0]
        for z in [*cross[1::2], k_end]:
            if z - knots[-1] >= 2.0 / (n * pixel_size_angstrom):
                knots.append(z)
        knots[-1] = k_end
        k_knots = torch.tensor(knots, dtype=torch.float64)
    else:
        k_knots = torch.linspace(0.0, k_end, n_bins + 1, dtype=torch.float64)
    n_k = k_knots.numel()
    freqs, values, k = (v[k >= k_knots[0]] for v in (freqs, values, k))
    s = torch.sin(phase(*_polar(freqs), params, optics)) ** 2
    j = (torch.searchsorted(k_knots, k, right=True) - 1).clamp(0, n_k - 2)
    u = (k - k_knots[j]) / (k_knots[j + 1] - k_knots[j])
    rows = torch.stack([1 - u, u, (1 - u) * s, u * s], dim=-1)  # (m, 4)
    cols = torch.stack([j, j + 1, n_k + j, n_k + j + 1], dim=-1)
    pairs = (cols[:, :, None] * 2 * n_k + cols[:, None, :]).flatten()
    normal = torch.zeros(4 * n_k * n_k, dtype=torch.float64)
    normal.index_add_(0, pairs, (rows[:, :, None] * rows[:, None, :]).flatten())
    rhs = torch.zeros(2 * n_k, dtype=torch.float64)
    rhs.index_add_(0, cols.flatten(), (rows * values[:, None]).flatten())
    normal = normal.reshape(2 * n_k, 2 * n_k)
    ridge = 1e-9 * float(normal.diagonal().mean()) * torch.eye(2 * n_k, dtype=torch.float64)
    coef = torch.linalg.solve(normal + ridge, rhs).clamp(min=0.0)
    return k_knots, coef[n_k:], coef[:n_k] + floor_value
