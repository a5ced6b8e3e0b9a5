"""Two components of V that read the session's history: ImpactFore per exposure and Meta.

ImpactFore of an exposure is its expected share of what the session will yield: its particles
weighted by the signal they carry. A particle adds to a reconstruction's spectral SNR in
proportion to its envelope, ``exp(-B k^2 / 2)``; an exposure whose Thon rings reach ``r``
(its CTF fit resolution) has its signal fall to the noise there, which for a Gaussian envelope
means ``B = 4 ln(10) r^2`` (a tenfold amplitude loss at ``1/r``: 3.3 A gives B = 100 A^2).
So each of its ``n`` particles weighs :func:`signal_weight` ``= exp(-B k_t^2 / 2)`` at the
frequency ``k_t`` that the session's maps are heading for, and ``n_w = n * weight``.
Normalised to ``(0, 1)`` against the session's typical exposure (the median ``n_w`` so far)
as ``n_w / (n_w + median)``: 0.5 for a typical exposure, towards 1 for a rich one, 0 for none
or for one without a CTF fit.

Meta is the stability of V over the recent window: the last ``window`` values are split into
an older and a newer half, and their means compared on the scale of their noise
(``z = |mean_new - mean_old| / (sd * sqrt(2 / h))`` for halves of ``h``). Within noise
(``z <= z_free``) Meta is 1; beyond it falls as ``exp(-(z - z_free))``. A steady session
stays near 1; a regime change drops it while the window straddles the change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["impact_fore", "meta_stability", "signal_weight"]


def signal_weight(fit_resolution_angstrom: float | None, *, at_resolution_angstrom: float) -> float:
    """The weight of a particle from an exposure fitted to ``fit_resolution_angstrom`` at the
    resolution ``at_resolution_angstrom`` (0 without a fit)."""
    if at_resolution_angstrom <= 0:
        raise ValueError(f"at_resolution_angstrom must be > 0, got {at_resolution_angstrom}")
    if fit_resolution_angstrom is None or not fit_resolution_angstrom > 0:
        return 0.0
    bfactor = 4.0 * math.log(10.0) * fit_resolution_angstrom**2
    return math.exp(-bfactor / (2.0 * at_resolution_angstrom**2))


def impact_fore(weighted_particles: float, *, typical: float | None) -> float:
    """This exposure's expected share of the session's yield, in ``[0, 1)``, from its
    weighted particles and the session's typical (median) weighted particles."""
    if weighted_particles < 0:
        raise ValueError(f"weighted_particles must be >= 0, got {weighted_particles}")
    if typical is None or typical <= 0:
        return 0.5 if weighted_particles > 0 else 0.0
    return weighted_particles / (weighted_particles + typical)


def meta_stability(
    history: Sequence[float], *, window: int = 20, z_free: float = 2.0
) -> float | None:
    """Meta of the latest value of ``history`` (V in commit order); ``None`` before a window
    of at least 6 values exists."""
    if window < 6:
        raise ValueError(f"window must be >= 6, got {window}")
    values = np.asarray(history[-window:], dtype=np.float64)
    if len(values) < 6:
        return None
    half = len(values) // 2
    old, new = values[:half], values[-half:]
    pooled = math.sqrt((old.var(ddof=1) + new.var(ddof=1)) / 2.0)
    spread = max(pooled, 1e-3) * math.sqrt(2.0 / half)
    z = abs(float(new.mean() - old.mean())) / spread
    return math.exp(-max(0.0, z - z_free))
