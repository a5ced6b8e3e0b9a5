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
