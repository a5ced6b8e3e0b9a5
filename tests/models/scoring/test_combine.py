"""V and HyperScore as the design writes them, against values computed by hand."""

from __future__ import annotations

import itertools
import math

import pytest

from causalscope.models.scoring import (
    HyperParameters,
    ScoreComponents,
    ScoreWeights,
    combine,
    hyperscore,
)


def test_v_and_hyperscore_equal_the_formula() -> None:
    w = ScoreWeights(logic=0.3, novelty=0.1, impact=0.25, delta_repro=0.15, meta=0.2)
    p = HyperParameters(beta=4.0, gamma=0.5, kappa=1.7)
    c = ScoreComponents(logic=0.8, novelty=0.4, impact=0.6, delta_repro=0.9, meta=0.7)
    v = 0.3 * 0.8 + 0.1 * 0.4 + 0.25 * math.log(0.6 + 1) + 0.15 * 0.9 + 0.2 * 0.7
    sigmoid = 1 / (1 + math.exp(-(4.0 * math.log(v) + 0.5)))
    score = combine(c, w, p)
    assert score is not None
    assert score.v == pytest.approx(v, rel=1e-12)
    assert score.hyperscore == pytest.approx(100 * (1 + sigmoid**1.7), rel=1e-12)
    assert sum(score.terms.values()) == pytest.approx(v, rel=1e-12)


def test_hyperscore_identities() -> None:
    p = HyperParameters(beta=5.0, gamma=1.2, kappa=2.0)
    midpoint = math.exp(-p.gamma / p.beta)  # sigmoid(0) = 1/2
    assert hyperscore(midpoint, p) == pytest.approx(100 * (1 + 0.5**2))
    values = [hyperscore(v, p) for v in (0.2, 0.5, 0.9, 1.0)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert 100 < values[0] and values[-1] <= 200
    with pytest.raises(ValueError, match="V must be > 0"):
        hyperscore(0.0, p)


def test_missing_components_keep_the_weights_sum_and_name_the_weakest() -> None:
    score = combine(ScoreComponents(logic=1.0, meta=0.25))
    assert score is not None
    # the two present weights (0.2 each) scaled to the full sum 1.0
    assert score.v == pytest.approx(0.5 * 1.0 + 0.5 * 0.25)
    assert score.weakest == "meta"
    assert "held down most by meta" in score.explain()
    assert combine(ScoreComponents()) is None


def test_components_are_normalised_into_the_unit_interval() -> None:
    low = combine(ScoreComponents(logic=0.0))
    assert low is not None and low.v == pytest.approx(1e-3)  # ln(V) stays finite
    with pytest.raises(ValueError, match="finite"):
        combine(ScoreComponents(logic=float("nan")))
    with pytest.raises(ValueError, match="weight meta"):
        ScoreWeights(meta=-0.1)


def test_the_defaults_are_the_settings():
    """One set of defaults: the model's are those a session runs with (V = 0.7 -> 150)."""
    from causalscope.config import load_settings

    scoring = load_settings().processing.scoring
    p = HyperParameters()
    assert (p.beta, p.kappa) == (scoring.beta, scoring.kappa)
    assert p.gamma == pytest.approx(scoring.gamma, abs=1e-6)
    assert hyperscore(0.7) == pytest.approx(150.0, abs=1e-4)
