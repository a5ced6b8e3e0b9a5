"""Delta-Repro: how stable an exposure's estimates are when it is measured twice.

The even and odd frames of a movie are two independent exposures of the same specimen at half
the dose each. Each half is fitted again (CTF: defocus and fit resolution; picking: the number
of particles), and each estimate's difference between the halves is normalised by the spread
the halves' own uncertainties allow:

- defocus: ``z = |d_even - d_odd| / sqrt(sigma_even^2 + sigma_odd^2)`` (the CTF fit's sigmas);
- fit resolution, as a spatial frequency ``k = 1/r``: ``z = |k_even - k_odd| / (sqrt(2) * s)``
  with ``s`` the larger of ``relative_sigma`` times their mean and ``shells`` shells of the
  fit's spectrum (``1 / (box * apix)`` each): a fit resolution reproduces to about a quarter of
  its frequency between half-dose halves of clean simulated exposures;
- a half without a defocus (no fit at all), when the whole exposure has one, did not
  reproduce it: its defocus counts as ``z = missing_z``; a fit resolution is compared only
  where both halves' rings support one (at half the dose they often do not);
- particles: ``z = |n_even - n_odd| / sqrt(n_even + n_odd + 1)`` (Poisson counts).

``DeltaRepro = exp(-rms(z) / 2)`` lies in ``(0, 1]``: 1 for identical halves, about 0.6 for
halves that differ as much as their uncertainties say, and towards 0 for estimates that do not
reproduce. The drift is not refitted (the frames are gone once the sums exist).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["HalfEstimate", "ReproResult", "delta_repro"]


@dataclass(frozen=True)
class HalfEstimate:
    """One half's refit: mean defocus with its sigma, fit resolution, particles picked."""

    defocus_angstrom: float | None
    defocus_sigma_angstrom: float | None
    fit_resolution_angstrom: float | None
    n_particles: int | None = None


@dataclass(frozen=True)
class ReproResult:
    """The deviations (``None`` where neither half measured it) and the score."""

    z_defocus: float | None
    z_fit_resolution: float | None
    z_particles: float | None
    delta_repro: float


def delta_repro(
    even: HalfEstimate,
    odd: HalfEstimate,
    *,
    frequency_step_per_angstrom: float,
    whole_supported: bool = True,
    shells: float = 3.0,
    relative_sigma: float = 0.25,
    missing_z: float = 4.0,
) -> ReproResult | None:
    """Delta-Repro of two halves (``None`` when no estimate can be compared)."""
    if frequency_step_per_angstrom <= 0:
        raise ValueError(
            f"frequency_step_per_angstrom must be > 0, got {frequency_step_per_angstrom}"
        )
    z_defocus = z_fit = None
    if even.defocus_angstrom is not None and odd.defocus_angstrom is not None:
        spread = math.hypot(even.defocus_sigma_angstrom or 0.0, odd.defocus_sigma_angstrom or 0.0)
        difference = abs(even.defocus_angstrom - odd.defocus_angstrom)
        z_defocus = difference / max(spread, 1.0)
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
