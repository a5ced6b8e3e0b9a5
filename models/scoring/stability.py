"""Two components of V that read the session's history: ImpactFore per exposure and Meta.

ImpactFore of an exposure is its expected share of what the session will yield: its particles
weighted by the signal they carry. A particle adds to a reconstruction's spectral SNR in
proportion to its envelope, ``exp(-B k^2 / 2)``; an exposure whose Thon rings reach ``r``
(its CTF fit resolution) has its signal fall to the noise there, which for a Gaussian envelope
means ``B = 4 ln(10) r^2`` (a tenfold amplitude loss at ``1/r``: 3.3 A gives B = 100 A^2).
So each of its ``n`` particles weighs :func:`signal_weight` ``= exp(-B k_t^2 / 2)`` at the
frequency ``k_t`` that the session's maps are heading for, and ``n_w = n * weight``. Only
particles whose projections stand alone count (:func:`overlapping_picks`): two bodies lying
side by side are at least a diameter apart, so picks closer than 0.9 diameters are particles
stuck together or stacked in the ice, which 2D classification throws out. (On simulated
exposures the nearest-neighbour distance of every pick of good exposures was 0.97 diameters
or more, even in fields 40 % covered; in exposures of 70 % aggregates a third of the picks
lay at 0.73-0.9.)
Normalised to ``(0, 1)`` against the session's typical exposure (the median ``n_w`` so far)
as ``n_w / (n_w + median)``: 0.5 for a typical exposure, towards 1 for a rich one, 0 for none
or for one without a CTF fit.

An exposure's expected contribution to the session's yield, in Angstrom, comes from the running
reconstruction's forecast (:class:`models.reconstruction.forecast.SsnrForecast`: the SSNR
grows in proportion to the particles): :func:`contribution_angstrom` is how much better the
map of the session's end (its forecast particle count, else the map's count now) is expected
to be with the exposure's particles than without them, ``d(N - n) - d(N)``, its particles
counted as ``n = n_w / w_mean`` of the session's average particle (``w_mean`` the session's
weighted over its plain particle count). ImpactFore's share above is its first-order
equivalent, free of the forecast: ``d(N - n) - d(N)`` grows in proportion to ``n`` for
``n << N``.

Meta is the stability of V over the recent window: the last ``window`` values are split into
an older and a newer half, and their means compared on the scale of their noise
(``z = |mean_new - mean_old| / (sd * sqrt(2 / h))`` for halves of ``h``). Within noise
(``z <= z_free``) Meta is 1; beyond it falls as ``exp(-(z - z_free))``. A steady session
stays near 1; a regime change drops it while the window straddles the change.

Meta also watches the ranking: when the weights change (learned from the operator's labels),
the window's exposures are scored again with the new weights and :func:`ranking_stability`
compares the two orders (Spearman's rho of the V each got then and gets now, as
``(1 + rho) / 2``): 1 while the weights hold or reorder nothing, lower the more the new
weights reorder the recent exposures. Meta is the product of the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from causalscope.models.reconstruction.forecast import SsnrForecast

__all__ = [
    "contribution_angstrom",
    "impact_fore",
    "meta_stability",
    "overlapping_picks",
    "ranking_stability",
    "signal_weight",
]


def signal_weight(fit_resolution_angstrom: float | None, *, at_resolution_angstrom: float) -> float:
    """The weight of a particle from an exposure fitted to ``fit_resolution_angstrom`` at the
    resolution ``at_resolution_angstrom`` (0 without a fit)."""
    if at_resolution_angstrom <= 0:
        raise ValueError(f"at_resolution_angstrom must be > 0, got {at_resolution_angstrom}")
    if fit_resolution_angstrom is None or not fit_resolution_angstrom > 0:
        return 0.0
    bfactor = 4.0 * math.log(10.0) * fit_resolution_angstrom**2
    return math.exp(-bfactor / (2.0 * at_resolution_angstrom**2))


def overlapping_picks(xy_px: np.ndarray, *, diameter_px: float, within: float = 0.9) -> int:
    """How many of the picks ``(n, 2)`` have another closer than ``within`` diameters."""
    from causalscope.models.scoring.facts import nearest_other_px

    if within <= 0:
        return 0
    if not diameter_px > 0:
        raise ValueError(f"diameter_px must be > 0, got {diameter_px}")
    return int((nearest_other_px(xy_px) < within * diameter_px).sum())


def impact_fore(weighted_particles: float, *, typical: float | None) -> float:
    """This exposure's expected share of the session's yield, in ``[0, 1)``, from its
    weighted particles and the session's typical (median) weighted particles."""
    if weighted_particles < 0:
        raise ValueError(f"weighted_particles must be >= 0, got {weighted_particles}")
    if typical is None or typical <= 0:
        return 0.5 if weighted_particles > 0 else 0.0
    return weighted_particles / (weighted_particles + typical)


def contribution_angstrom(
    particles: float, *, forecast: SsnrForecast, horizon: float
) -> float | None:
    """How much better (A) the map of ``horizon`` particles is expected to be with
    ``particles`` more than without them, by ``forecast`` (None where it gives no
    resolution, and for ``particles`` not below the horizon: no map without them)."""
    if particles < 0 or not horizon > 0:
        raise ValueError(f"need particles >= 0 and horizon > 0, got {particles} and {horizon}")
    if particles >= horizon:
        return None
    with_them = forecast.resolution_at(horizon)
    without = forecast.resolution_at(horizon - particles)
    if not (math.isfinite(with_them) and math.isfinite(without)):
        return None
    return max(0.0, without - with_them)


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


def ranking_stability(then: Sequence[float], now: Sequence[float]) -> float | None:
    """How well the order of the same exposures by V holds between ``then`` (the V each got
    when scored) and ``now`` (V again, with the current weights): ``(1 + rho) / 2`` of
    Spearman's rho, in ``[0, 1]``; 1 when neither varies (nothing to reorder), ``None`` for
    fewer than 3 exposures."""
    if len(then) != len(now):
        raise ValueError(f"then and now must pair up: {len(then)} vs {len(now)} values")
    if len(then) < 3:
        return None
    a = np.asarray(then, dtype=np.float64)
    b = np.asarray(now, dtype=np.float64)
    if np.ptp(a) <= 1e-12 * max(1.0, float(np.abs(a).max())) or np.ptp(b) <= 1e-12 * max(
        1.0, float(np.abs(b).max())
    ):
        return 1.0
    rank_a = _ranks(a)
    rank_b = _ranks(b)
    rho = float(np.corrcoef(rank_a, rank_b)[0, 1])
    return min(1.0, max(0.0, (1.0 + rho) / 2.0))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks
