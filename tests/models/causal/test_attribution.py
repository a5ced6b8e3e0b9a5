"""Attribution: shares that add up, the dominant cause of bad exposures, ranking and advice."""

from __future__ import annotations

import numpy as np
import pytest

from causalscope.models.causal.attribution import (
    ADVICE,
    advice,
    attribute,
    best_factors,
    rank_causes,
)
from causalscope.models.causal.graph import FACTORS, causal_graph
from causalscope.models.causal.learn import BayesianLinearModel
from causalscope.models.causal.synthetic import draw_synthetic_session

GRAPH = causal_graph()


def _fitted(
    seed: int, n: int = 400
) -> tuple[BayesianLinearModel, np.ndarray, np.ndarray, np.ndarray]:
    s = draw_synthetic_session(n_exposures=n, seed=seed)
    model = BayesianLinearModel.from_graph(GRAPH)
    for row, value in zip(s.x, s.y, strict=True):
        model.update(row, float(value))
    return model, s.x, s.y, s.true_weights[0]


def test_shares_sum_to_the_loss_against_the_best() -> None:
    model, x, y, _ = _fitted(11, n=150)
    best = best_factors(x, model.mean)
    a = attribute(model, x, best, y)
    np.testing.assert_allclose(a.share.sum(axis=1), a.predicted_loss)
    np.testing.assert_allclose(a.predicted_loss + a.unexplained, y - best @ model.mean)
    # Against the best of every factor, no share is negative.
    assert np.all(a.share >= -1e-12)
    assert np.all(a.share_sd >= 0) and np.all(a.predicted_loss_sd >= 0)
    one = attribute(model, x[5], best, y[5:6])
    np.testing.assert_allclose(one.share[0], a.share[5])
    np.testing.assert_allclose(one.share_sd[0], a.share_sd[5])


def test_dominant_cause_of_bad_exposures_is_identified() -> None:
    correct = total = 0
    for seed in range(10):
        model, x, y, w = _fitted(100 + seed)
        true_share = ((x - best_factors(x, w)) * w)[:, 1:]
        loss = true_share.sum(axis=1)
        bad = loss > np.quantile(loss, 0.9)
        est = attribute(model, x, best_factors(x, model.mean), y)
        correct += int(np.sum(np.argmax(est.share, axis=1)[bad] == np.argmax(true_share, 1)[bad]))
        total += int(bad.sum())
    assert total >= 300
    assert correct / total >= 0.90


def test_session_ranking_matches_the_truth_with_uncertainty() -> None:
    model, x, _, w = _fitted(21)
    ranks = rank_causes(model, x, best_factors(x, model.mean), n_draws=1000)
    true_mean_share = ((x - best_factors(x, w)) * w).mean(axis=0)[1:]
    names = [f.name for f in FACTORS]
    assert ranks[0].name == names[int(np.argmax(true_mean_share))]
    assert ranks[0].p_top > 0.9
    assert sum(r.p_top for r in ranks) == pytest.approx(1.0)
    assert [r.mean for r in ranks] == sorted((r.mean for r in ranks), reverse=True)
    for r in ranks:
        j = names.index(r.name)
        assert abs(r.mean - true_mean_share[j]) < 4 * r.sd + 1e-9


def test_advice_covers_every_cause() -> None:
    assert set(ADVICE) == {f.name for f in FACTORS}
    assert "stigmator" in advice("astigmatism")
    with pytest.raises(ValueError, match="no advice"):
        advice("gremlins")
