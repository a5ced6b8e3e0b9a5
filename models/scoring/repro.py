"""Delta-Repro: how stable an exposure's estimates are when it is measured twice.

The even and odd frames of a movie are two independent exposures of the same specimen at half
the dose each. Each half is fitted again (CTF: defocus and fit resolution; picking: the number
of particles), and each estimate's difference between the halves is put on the scale of what
matters for that quantity:

- defocus: half the halves' difference is the whole exposure's defocus error they imply (for a
  noise-limited estimate the whole's error is about half the difference of its halves), in
  units of ``defocus_scale_angstrom``: ``z = D / (2 * scale)``, where ``D`` is the halves'
  difference in the direction where they differ most,
  ``D = max_theta |d_even(theta) - d_odd(theta)| = |m_even - m_odd| + |a_even - a_odd| / 2``
  with ``m`` the mean defocus and ``a = (dU - dV) exp(2i angle)`` the astigmatism as a vector
  (the mean's difference alone where a half has no astigmatism). The scale is
  one for every exposure (:func:`defocus_scale_angstrom`: the defocus error that costs a 45
  degree CTF phase error at a target resolution), not the fit's own sigma: a difference
  divided by the sigmas the fit claims is about ``|N(0, 1)|`` for every exposure whose sigmas
  are honest, easy or hard, so it says how well the sigmas are calibrated and nothing of
  which exposure's defocus is worse;
- fit resolution, as a spatial frequency ``k = 1/r``: ``z = |k_even - k_odd| / (sqrt(2) * s)``
  with ``s`` the larger of ``relative_sigma`` times their mean and ``shells`` shells of the
  fit's spectrum (``1 / (box * apix)`` each): a fit resolution reproduces to about a quarter of
  its frequency between half-dose halves of clean simulated exposures;
- a half without a defocus (no fit at all), when the whole exposure has a supported one, did
  not reproduce it: its defocus counts as ``z = missing_z``; a fit resolution is compared only
  where both halves' rings support one (at half the dose they often do not);
- particles: ``z = |n_even - n_odd| / sqrt(n_even + n_odd + 1)`` (Poisson counts);
- drift: the even and the odd frames, each aligned on its own, are two measurements of the
  trajectory (:func:`trajectory_difference_px`: the RMS difference between the even frames'
  shifts and the odd frames' interpolated to the same times, their offset removed), in units
  of ``shift_scale_angstrom`` (:func:`shift_scale_angstrom`: the shift that costs a 45 degree
  phase error at the target resolution, 0.375 A at 3 A): ``z = D / (2 * scale)``;
- resampled noise: the whole exposure's CTF sum is fitted again with fresh noise of its own
  variance added (as much noise again: each half's signal-to-noise ratio, with all of the
  signal). In the linear regime the refit moves by an error of the whole's own size, so the
  worst-direction difference ``D`` between the two fits is on the scale of the whole's error
  itself: ``z = D / scale``.

``DeltaRepro = exp(-rms(z) / 2)`` lies in ``(0, 1]``: 1 for identical halves, about 0.6 for
halves whose estimates differ by one scale each, and towards 0 for estimates that do not
reproduce.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "HalfEstimate",
    "ReproResult",
    "defocus_scale_angstrom",
    "delta_repro",
    "shift_scale_angstrom",
    "trajectory_difference_px",
    "worst_direction_difference",
]


@dataclass(frozen=True)
class HalfEstimate:
    """One half's refit: mean defocus with its sigma, fit resolution, particles picked, and the
    astigmatism ``dU - dV`` with its angle (degrees)."""

    defocus_angstrom: float | None
    defocus_sigma_angstrom: float | None
    fit_resolution_angstrom: float | None
    n_particles: int | None = None
    astigmatism_angstrom: float | None = None
    astigmatism_angle_deg: float | None = None

    def astigmatism_vector(self) -> complex | None:
        """``(dU - dV) exp(2i angle)``: equal for equal astigmatisms whichever axis is U."""
        if self.astigmatism_angstrom is None or self.astigmatism_angle_deg is None:
            return None
        return _astigmatism_vector(self.astigmatism_angstrom, self.astigmatism_angle_deg)


def _astigmatism_vector(difference: float, angle_deg: float) -> complex:
    return difference * cmath.exp(2j * math.radians(angle_deg))


def worst_direction_difference(
    first: tuple[float, float, float], second: tuple[float, float, float]
) -> float:
    """How far two CTFs' defoci, each ``(dU, dV, angle_deg)``, differ in the direction where
    they differ most: ``max_theta |d1(theta) - d2(theta)|`` with ``d(theta) = (dU + dV)/2 +
    (dU - dV)/2 cos 2(theta - angle)``, which is ``|m1 - m2| + |a1 - a2| / 2`` for the means
    ``m`` and the astigmatism vectors ``a = (dU - dV) exp(2i angle)``."""
    (u1, v1, angle1), (u2, v2, angle2) = first, second
    means = abs(0.5 * (u1 + v1) - 0.5 * (u2 + v2))
    vectors = _astigmatism_vector(u1 - v1, angle1) - _astigmatism_vector(u2 - v2, angle2)
    return means + 0.5 * abs(vectors)


@dataclass(frozen=True)
class ReproResult:
    """The deviations (``None`` where neither half measured it) and the score."""

    z_defocus: float | None
    z_fit_resolution: float | None
    z_particles: float | None
    delta_repro: float
    z_drift: float | None = None
    z_noise: float | None = None


def defocus_scale_angstrom(*, resolution_angstrom: float, wavelength_angstrom: float) -> float:
    """The defocus error that shifts the CTF's phase by 45 degrees at ``resolution_angstrom``:
    ``pi * lambda * dz * k^2 = pi / 4`` gives ``dz = r^2 / (4 lambda)`` (114 A at 3 A and
    300 kV)."""
    if resolution_angstrom <= 0 or wavelength_angstrom <= 0:
        raise ValueError(
            "resolution_angstrom and wavelength_angstrom must be > 0, got "
            f"{resolution_angstrom} and {wavelength_angstrom}"
        )
    return resolution_angstrom**2 / (4.0 * wavelength_angstrom)


def shift_scale_angstrom(*, resolution_angstrom: float) -> float:
    """The shift that moves the phase at ``resolution_angstrom`` by 45 degrees:
    ``2 pi k dx = pi / 4`` gives ``dx = r / 8`` (0.375 A at 3 A)."""
    if resolution_angstrom <= 0:
        raise ValueError(f"resolution_angstrom must be > 0, got {resolution_angstrom}")
    return resolution_angstrom / 8.0


def trajectory_difference_px(even: np.ndarray, odd: np.ndarray) -> float:
    """RMS distance ``(px)`` between two measurements of one trajectory: ``even`` ``(Fe, 2)``
    the shifts of frames 0, 2, 4, ... and ``odd`` ``(Fo, 2)`` those of frames 1, 3, 5, ...,
    each relative to its own first frame. The odd trajectory is interpolated (linearly in
    time) at the even frames it spans, and the mean difference (the halves' unknown relative
    offset) is removed."""
    even, odd = np.asarray(even, dtype=np.float64), np.asarray(odd, dtype=np.float64)
    if even.ndim != 2 or odd.ndim != 2 or even.shape[1] != 2 or odd.shape[1] != 2:
        raise ValueError(f"need (F, 2) shifts, got {even.shape} and {odd.shape}")
    t_even = 2.0 * np.arange(len(even))
    t_odd = 2.0 * np.arange(len(odd)) + 1.0
    inside = (t_even >= t_odd[0]) & (t_even <= t_odd[-1])
    if inside.sum() < 2:
        raise ValueError(f"too few frames to compare: {len(even)} even and {len(odd)} odd")
    at = t_even[inside]
    odd_at = np.stack([np.interp(at, t_odd, odd[:, axis]) for axis in (0, 1)], axis=1)
    difference = even[inside] - odd_at
    difference -= difference.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(difference**2, axis=1))))


def delta_repro(
    even: HalfEstimate,
    odd: HalfEstimate,
    *,
    frequency_step_per_angstrom: float,
    defocus_scale_angstrom: float,
    whole_supported: bool = True,
    shells: float = 3.0,
    relative_sigma: float = 0.25,
    missing_z: float = 4.0,
    drift_difference_angstrom: float | None = None,
    shift_scale_angstrom: float = 0.375,
    noise_difference_angstrom: float | None = None,
) -> ReproResult | None:
    """Delta-Repro of two halves (``None`` when no estimate can be compared); the halves'
    defocus sigmas are kept for the record, not used (see the module docstring)."""
    if frequency_step_per_angstrom <= 0:
        raise ValueError(
            f"frequency_step_per_angstrom must be > 0, got {frequency_step_per_angstrom}"
        )
    if defocus_scale_angstrom <= 0:
        raise ValueError(f"defocus_scale_angstrom must be > 0, got {defocus_scale_angstrom}")
    z_defocus = z_fit = None
    if even.defocus_angstrom is not None and odd.defocus_angstrom is not None:
        difference = abs(even.defocus_angstrom - odd.defocus_angstrom)
        a_even, a_odd = even.astigmatism_vector(), odd.astigmatism_vector()
        if a_even is not None and a_odd is not None:  # the direction where they differ most
            difference += 0.5 * abs(a_even - a_odd)
        z_defocus = difference / (2.0 * defocus_scale_angstrom)
    elif whole_supported:
        z_defocus = missing_z
    fits = (even.fit_resolution_angstrom, odd.fit_resolution_angstrom)
    if all(r is not None and r > 0 for r in fits):
        k_even, k_odd = (1.0 / r for r in fits if r is not None)
        step = max(relative_sigma * 0.5 * (k_even + k_odd), shells * frequency_step_per_angstrom)
        z_fit = abs(k_even - k_odd) / (math.sqrt(2.0) * step)
    z_particles = None
    if even.n_particles is not None and odd.n_particles is not None:
        z_particles = abs(even.n_particles - odd.n_particles) / math.sqrt(
            even.n_particles + odd.n_particles + 1
        )
    z_drift = None
    if drift_difference_angstrom is not None:
        if shift_scale_angstrom <= 0:
            raise ValueError(f"shift_scale_angstrom must be > 0, got {shift_scale_angstrom}")
        z_drift = drift_difference_angstrom / (2.0 * shift_scale_angstrom)
    z_noise = None
    if noise_difference_angstrom is not None:
        z_noise = noise_difference_angstrom / defocus_scale_angstrom
    found = [z for z in (z_defocus, z_fit, z_particles, z_drift, z_noise) if z is not None]
    if not found:
        return None
    rms = math.sqrt(sum(z * z for z in found) / len(found))
    return ReproResult(z_defocus, z_fit, z_particles, math.exp(-rms / 2.0), z_drift, z_noise)
