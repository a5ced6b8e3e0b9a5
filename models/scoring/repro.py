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
- particles: ``z = |n_even - n_odd| / sqrt(n_even + n_odd + 1)`` (Poisson counts).

``DeltaRepro = exp(-rms(z) / 2)`` lies in ``(0, 1]``: 1 for identical halves, about 0.6 for
halves whose estimates differ by one scale each, and towards 0 for estimates that do not
reproduce. The drift is not refitted (the frames are gone once the sums exist).
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass

__all__ = [
    "HalfEstimate",
    "ReproResult",
    "defocus_scale_angstrom",
    "delta_repro",
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
    found = [z for z in (z_defocus, z_fit, z_particles) if z is not None]
    if not found:
        return None
    rms = math.sqrt(sum(z * z for z in found) / len(found))
    return ReproResult(z_defocus, z_fit, z_particles, math.exp(-rms / 2.0))
