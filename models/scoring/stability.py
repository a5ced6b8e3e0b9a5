"""Two components of V that read the session's history: ImpactFore per exposure and Meta.

ImpactFore of an exposure is its expected share of what the session will yield. By
Rosenthal and Henderson, ``1/d^2`` grows as ``(2/B) ln N``, so adding ``n`` particles to a set
of ``N`` gains ``(2/B) ln(1 + n/N)``: for the session's exposures, which each add a small
share, that gain is proportional to ``n``. Normalised to ``(0, 1)`` against the session's
typical exposure (the median of the particles kept per exposure so far) as
``n / (n + median)``: 0.5 for a typical exposure, towards 1 for a rich one, 0 for none.

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

__all__ = ["impact_fore", "meta_stability"]


def impact_fore(n_particles: float, *, typical_particles: float | None) -> float:
    """This exposure's expected share of the session's yield, in ``[0, 1)``."""
    if n_particles < 0:
        raise ValueError(f"n_particles must be >= 0, got {n_particles}")
    if typical_particles is None or typical_particles <= 0:
        return 0.5 if n_particles > 0 else 0.0
    return n_particles / (n_particles + typical_particles)


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
