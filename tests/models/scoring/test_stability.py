"""Meta on a steady and a changing session; ImpactFore's scale."""

from __future__ import annotations

import math

import numpy as np
import pytest

from causalscope.models.scoring import impact_fore, meta_stability, signal_weight


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
