"""Meta on a steady and a changing session; ImpactFore's scale; an exposure's expected
contribution against the SSNR law it is read from."""

from __future__ import annotations

import math

import numpy as np
import pytest

from causalscope.models.reconstruction.forecast import SsnrForecast
from causalscope.models.scoring import (
    contribution_angstrom,
    impact_fore,
    meta_stability,
    overlapping_picks,
    signal_weight,
)


def test_meta_is_stable_on_a_steady_session_and_drops_after_a_regime_change() -> None:
    rng = np.random.default_rng(3)
    steady = list(0.7 + 0.05 * rng.standard_normal(200))
    metas = [meta_stability(steady[: i + 1]) for i in range(5, 200)]
    values = np.array([m for m in metas if m is not None])
    assert values.mean() > 0.95 and np.quantile(values, 0.1) > 0.8
    changed = steady[:100] + list(0.45 + 0.05 * rng.standard_normal(40))
    after = [meta_stability(changed[: 100 + k + 1]) for k in range(20)]
    assert min(m for m in after if m is not None) < 0.05  # within 20 exposures of the change
    assert meta_stability(steady[:5]) is None


def test_impact_fore_is_a_share_of_the_typical_exposure() -> None:
    assert impact_fore(120, typical=120) == pytest.approx(0.5)
    assert impact_fore(0, typical=120) == 0.0
    assert impact_fore(360, typical=120) == pytest.approx(0.75)
    assert impact_fore(10, typical=None) == 0.5
    with pytest.raises(ValueError, match="weighted_particles"):
        impact_fore(-1, typical=10)


def test_signal_weight_is_the_envelope_that_reaches_noise_at_the_fit_resolution() -> None:
    # B = 4 ln 10 r^2: the amplitude exp(-B k^2 / 4) is a tenth at k = 1/r
    r = 3.3
    bfactor = 4 * math.log(10) * r**2
    assert math.exp(-bfactor / (4 * r**2)) == pytest.approx(0.1)
    assert signal_weight(r, at_resolution_angstrom=6.0) == pytest.approx(math.exp(-bfactor / 72.0))
    # a worse fit weighs less; no fit weighs nothing
    assert signal_weight(6.0, at_resolution_angstrom=6.0) < signal_weight(
        r, at_resolution_angstrom=6.0
    )
    assert signal_weight(None, at_resolution_angstrom=6.0) == 0.0


def test_ranking_stability_is_one_for_the_same_order_and_falls_as_it_reorders() -> None:
    from causalscope.models.scoring import ranking_stability

    then = [0.61, 0.72, 0.55, 0.80, 0.66, 0.70, 0.59, 0.75, 0.64, 0.68]
    assert ranking_stability(then, [2 * v + 1 for v in then]) == pytest.approx(1.0)  # same order
    assert ranking_stability(then, [-v for v in then]) == pytest.approx(0.0, abs=1e-12)  # reversed
    # one neighbouring pair swapped among 10: rho = 1 - 6 * 2 / (10 * 99)
    now = sorted(then)
    now[4], now[5] = now[5], now[4]
    expected = (1 + 1 - 6 * 2 / (10 * 99)) / 2
    assert ranking_stability(sorted(then), now) == pytest.approx(expected)
    # ties share their rank: a constant side has nothing to reorder
    assert ranking_stability([0.5] * 5, [0.1, 0.2, 0.3, 0.4, 0.5]) == 1.0
    assert ranking_stability([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert ranking_stability([0.1, 0.2], [0.2, 0.1]) is None
    with pytest.raises(ValueError, match="pair up"):
        ranking_stability([0.1, 0.2, 0.3], [0.1, 0.2])


def _resolution(log_amplitude: float, bfactor: float, ratio: float) -> float:
    """The SSNR law solved directly: ``a + ln(ratio) - (B/2) k^2 - ln k = ln(0.143/0.857)``
    on a fine grid of k (ratio: particles over the fit's)."""
    k = np.linspace(0.01, 1.0, 2_000_001)
    excess = log_amplitude + math.log(ratio) - bfactor / 2 * k**2 - np.log(k)
    return float(1.0 / k[np.argmin(np.abs(excess - math.log(0.143 / 0.857)))])


def test_a_contribution_is_the_resolution_the_map_would_lose_without_the_particles() -> None:
    law = SsnrForecast(log_amplitude=2.0, bfactor_angstrom2=80.0, particles=10_000)
    # the fit again from its B and its resolution at twice the particles (what is stored)
    again = SsnrForecast.through(law.resolution_at(20_000), particles=20_000, bfactor_angstrom2=80)
    for n in (3_000, 40_000, 200_000):
        assert again.resolution_at(n) == pytest.approx(law.resolution_at(n), rel=1e-9)
    horizon = 100_000
    found = contribution_angstrom(20_000, forecast=law, horizon=horizon)
    want = _resolution(2.0, 80.0, 8.0) - _resolution(2.0, 80.0, 10.0)
    assert found == pytest.approx(want, abs=2e-5)  # the grid's step in d near 3 A
    # a small exposure's share is first order: twice the particles, twice the contribution
    one = contribution_angstrom(200, forecast=law, horizon=horizon)
    two = contribution_angstrom(400, forecast=law, horizon=horizon)
    assert one is not None and two is not None and two == pytest.approx(2 * one, rel=0.01)
    # the same particles are worth less to a bigger map
    later = contribution_angstrom(200, forecast=law, horizon=4 * horizon)
    assert later is not None and later < one / 2
    assert contribution_angstrom(0, forecast=law, horizon=horizon) == 0.0
    assert contribution_angstrom(horizon, forecast=law, horizon=horizon) is None
    with pytest.raises(ValueError, match="horizon"):
        contribution_angstrom(10, forecast=law, horizon=0.0)


def test_picks_closer_than_a_diameter_are_the_overlapping_ones() -> None:
    """Bodies side by side are a diameter apart or more: a crowded hexagonal field at 1.02
    diameters has no overlapping pick; a clump of three 0.6 diameters apart adds three."""
    d = 100.0
    rows = [
        [(i + 0.5 * (j % 2)) * 1.02 * d, j * 1.02 * d * math.sqrt(3) / 2]
        for i in range(8)
        for j in range(8)
    ]
    lattice = np.asarray(rows)
    assert overlapping_picks(lattice, diameter_px=d) == 0
    clump = np.array([[2000.0, 2000.0], [2060.0, 2000.0], [2030.0, 2052.0]])
    assert overlapping_picks(np.vstack([lattice, clump]), diameter_px=d) == 3
    assert overlapping_picks(np.vstack([lattice, clump]), diameter_px=d, within=0.0) == 0
    assert overlapping_picks(clump[:1], diameter_px=d) == 0
    with pytest.raises(ValueError, match="diameter_px"):
        overlapping_picks(clump, diameter_px=0.0)
