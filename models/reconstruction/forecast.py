"""Resolution against particle count: the Rosenthal-Henderson fit and its forecast.

For a map whose signal falls with an overall B-factor, ``ln N = B / (2 d^2) + c``: the squared
inverse resolution ``1/d^2`` of a reconstruction from ``N`` particles grows linearly in
``ln N`` with slope ``2 / B`` (Rosenthal & Henderson 2003). Fitted to the resolutions of
random subsets (doubling), the line gives the B-factor and forecasts the particles (and, at the
session's particle rate, the time) that a target resolution needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["RosenthalHenderson", "doubling_subsets", "fit_rosenthal_henderson"]


def doubling_subsets(n_particles: int, *, smallest: int = 500) -> list[int]:
    """Subset sizes ``smallest, 2 smallest, 4 smallest, ...`` below ``n_particles``, then
    ``n_particles`` itself."""
    if smallest < 1:
        raise ValueError(f"smallest must be >= 1, got {smallest}")
    sizes = []
    size = smallest
    while size < n_particles:
        sizes.append(size)
        size *= 2
    return [*sizes, n_particles] if n_particles >= 1 else sizes


@dataclass(frozen=True)
class RosenthalHenderson:
    """The line ``1/d^2 = slope ln N + intercept`` (d in A) and what it implies.

    ``bfactor_angstrom2 = 2 / slope``; ``bfactor_sd_angstrom2`` from the slope's standard error
    (``nan`` with only two points).
    """

    slope: float
    intercept: float
    slope_sd: float
    particles: tuple[int, ...]
    resolutions_angstrom: tuple[float, ...]

    @property
    def bfactor_angstrom2(self) -> float:
        return 2.0 / self.slope if self.slope > 0 else math.inf

    @property
    def bfactor_sd_angstrom2(self) -> float:
        if self.slope <= 0:
            return math.inf
        return 2.0 * self.slope_sd / self.slope**2

    def resolution_at(self, n_particles: float) -> float:
        """Forecast resolution (A) from ``n_particles``; ``inf`` where the line gives none."""
        inverse_d2 = self.slope * math.log(n_particles) + self.intercept
        return 1.0 / math.sqrt(inverse_d2) if inverse_d2 > 0 else math.inf

    def particles_for(self, resolution_angstrom: float) -> float:
        """Particles (a float; ``inf`` if never) the line needs to reach ``resolution_angstrom``."""
        if self.slope <= 0:
            return math.inf
        exponent = (1.0 / resolution_angstrom**2 - self.intercept) / self.slope
        return math.exp(exponent) if exponent < 700 else math.inf

    def hours_to(
        self, resolution_angstrom: float, *, particles_now: int, particles_per_hour: float
    ) -> float:
        """Hours until ``resolution_angstrom`` at the current rate (0 if already there)."""
        needed = self.particles_for(resolution_angstrom)
        if needed <= particles_now:
            return 0.0
        if particles_per_hour <= 0 or not math.isfinite(needed):
            return math.inf
        return (needed - particles_now) / particles_per_hour


def fit_rosenthal_henderson(
    particles: list[int] | np.ndarray, resolutions_angstrom: list[float] | np.ndarray
) -> RosenthalHenderson:
    """Least-squares line of ``1/d^2`` against ``ln N`` through >= 2 finite points."""
    n = np.asarray(particles, dtype=np.float64)
    d = np.asarray(resolutions_angstrom, dtype=np.float64)
    if n.shape != d.shape or n.ndim != 1:
        raise ValueError(f"particles and resolutions must be (k,) each, got {n.shape}, {d.shape}")
    keep = np.isfinite(d) & (d > 0) & (n > 0)
    if keep.sum() < 2:
        raise ValueError(
            f"need >= 2 subsets with a finite resolution, got {int(keep.sum())} of {n.size}"
        )
    x, y = np.log(n[keep]), 1.0 / d[keep] ** 2
    design = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, y, rcond=None)
    slope_sd = math.nan
    if keep.sum() > 2:
        residual = y - design @ np.array([slope, intercept])
        variance = float(residual @ residual) / (keep.sum() - 2)
        slope_sd = math.sqrt(variance / float(((x - x.mean()) ** 2).sum()))
    return RosenthalHenderson(
        float(slope),
        float(intercept),
        slope_sd,
        tuple(int(v) for v in n[keep]),
        tuple(float(v) for v in d[keep]),
    )
