"""Exact incremental learning, calibration against a known truth, convergence, change detection."""

from __future__ import annotations

import numpy as np
import pytest

from models.causal.bench import update_cost_per_exposure
from models.causal.graph import causal_graph, edge_priors
from models.causal.learn import BayesianLinearModel, CausalLearner, ChangeDetector, nig_posterior
from models.causal.synthetic import TRUE_WEIGHTS, draw_synthetic_session

GRAPH = causal_graph()
NAMES, _, _, TOLERANCES = edge_priors(GRAPH)


def _fit(x: np.ndarray, y: np.ndarray, **kwargs: float) -> BayesianLinearModel:
    model = BayesianLinearModel.from_graph(GRAPH, **kwargs)
    for row, value in zip(x, y, strict=True):
        model.update(row, float(value))
    return model


def test_incremental_posterior_equals_batch_closed_form() -> None:
    s = draw_synthetic_session(n_exposures=500, seed=7)
    model = BayesianLinearModel.from_graph(GRAPH)
    prior = dict(prior_mean=model.m0, prior_cov_unscaled=model.v0, a0=model.a0, b0=model.b0)
    model = _fit(s.x, s.y)
    batch = nig_posterior(s.x, s.y, **prior)
    np.testing.assert_allclose(model.mean, batch.mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.cov_unscaled, batch.cov_unscaled, rtol=1e-7, atol=1e-12)
    assert model.a == pytest.approx(batch.a)
    assert model.b == pytest.approx(batch.b, rel=1e-8)


def test_discount_is_an_exact_power_prior() -> None:
    s = draw_synthetic_session(n_exposures=200, seed=3)
    model = _fit(s.x, s.y)
    delta = 0.3
    model.discount(delta)
    # Tempering the likelihood by delta = scaling the data by sqrt(delta) (but a counts delta*n/2).
    r = np.sqrt(delta)
    batch = nig_posterior(
        r * s.x,
        r * s.y,
        prior_mean=model.m0,
        prior_cov_unscaled=model.v0,
        a0=model.a0,
        b0=model.b0,
    )
    np.testing.assert_allclose(model.mean, batch.mean, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(model.cov_unscaled, batch.cov_unscaled, rtol=1e-6, atol=1e-12)
    assert model.a == pytest.approx(model.a0 + delta * 100)
    assert model.b == pytest.approx(batch.b, rel=1e-6)
    model.discount(0.0)
    np.testing.assert_allclose(model.mean, model.m0, atol=1e-9)
    assert model.b == pytest.approx(model.b0)


def test_calibration_of_posterior_intervals_against_known_weights() -> None:
    inside95 = inside68 = total = 0
    per_session_95 = []
    for seed in range(40):
        s = draw_synthetic_session(n_exposures=400, seed=seed)
        model = _fit(s.x, s.y)
        w = s.true_weights[0]
        lo, hi = model.interval(0.95)
        hit95 = int(np.sum((w >= lo) & (w <= hi)))
        lo, hi = model.interval(0.68)
        inside68 += int(np.sum((w >= lo) & (w <= hi)))
        inside95 += hit95
        total += w.size
        per_session_95.append(hit95 / w.size)
    # 40 sessions x 8 weights = 320 intervals: the binomial sd of a 68 % coverage is 2.6 %.
    assert inside95 / total >= 0.90
    assert 0.60 <= inside68 / total <= 0.76
    assert np.mean(per_session_95) >= 0.90


def test_converges_within_200_exposures_with_five_active_causes() -> None:
    weights = dict(TRUE_WEIGHTS, dose=0.0, particle_density=0.0)
    assert sum(v != 0 for k, v in weights.items() if k != "intercept") == 5
    for seed in range(5):
        s = draw_synthetic_session(n_exposures=200, seed=200 + seed, weights=weights)
        model = BayesianLinearModel.from_graph(GRAPH)
        assert not model.converged(TOLERANCES)
        first = None
        for i, (row, value) in enumerate(zip(s.x, s.y, strict=True)):
            model.update(row, float(value))
            if first is None and model.converged(TOLERANCES):
                first = i + 1
        assert first is not None and first <= 200, f"seed {seed}: not converged"
        assert model.converged(TOLERANCES)
        lo, hi = model.interval(0.99)
        w = s.true_weights[0]
        assert np.all((w >= lo) & (w <= hi))


def test_regime_change_detected_within_20_exposures_and_relearned() -> None:
    for seed in range(10):
        s = draw_synthetic_session(n_exposures=600, seed=300 + seed, change_at=300)
        learner = CausalLearner(BayesianLinearModel.from_graph(GRAPH))
        for row, value in zip(s.x, s.y, strict=True):
            learner.observe(row, float(value))
        assert learner.changes, f"seed {seed}: no change detected"
        assert 300 <= learner.changes[0] < 320, f"seed {seed}: {learner.changes}"
        assert len(learner.changes) == 1, f"seed {seed}: false alarms {learner.changes}"
        # The new regime's ice weight (doubled) is learned after the old evidence is tempered.
        ice = NAMES.index("ice_thickness")
        err = learner.model.mean[ice] - s.true_weights[-1, ice]
        assert abs(err) < 3 * learner.model.sd()[ice] + 0.05 * s.true_weights[-1, ice]


def test_false_alarms_are_rare_without_a_change() -> None:
    # CUSUM with k = 0.5, h = 8: in-control average run length ~1e4 exposures (Siegmund's
    # approximation), so about one false alarm is expected in 10 x 1000 exposures.
    alarms = 0
    for seed in range(10):
        s = draw_synthetic_session(n_exposures=1000, seed=400 + seed)
        learner = CausalLearner(BayesianLinearModel.from_graph(GRAPH))
        for row, value in zip(s.x, s.y, strict=True):
            learner.observe(row, float(value))
        alarms += len(learner.changes)
    assert alarms <= 2


def test_forgetting_follows_a_drifting_weight_that_full_memory_misses() -> None:
    s = draw_synthetic_session(
        n_exposures=800, seed=5, change_at=400, changed_weights={"drift": 0.45}
    )
    drift = NAMES.index("drift")
    full = _fit(s.x, s.y)
    forgetful = _fit(s.x, s.y, forgetting=0.98)
    assert abs(forgetful.mean[drift] - 0.45) < 0.05
    assert abs(full.mean[drift] - 0.45) > 2 * abs(forgetful.mean[drift] - 0.45)


def test_change_detector_ignores_a_single_outlier_and_catches_a_shift() -> None:
    det = ChangeDetector()
    assert not any(det.update(z) for z in [0.0] * 30 + [50.0] + [0.0] * 30)
    alarms = [det.update(3.0) for _ in range(10)]
    assert any(alarms) and alarms.index(True) < 5


def test_invalid_inputs_are_rejected() -> None:
    model = BayesianLinearModel.from_graph(GRAPH)
    with pytest.raises(ValueError, match="entries"):
        model.update(np.ones(3), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        model.update(np.full(model.p, np.nan), 1.0)
    with pytest.raises(ValueError, match="forgetting"):
        BayesianLinearModel(np.zeros(2), np.ones(2), noise_sd=1.0, forgetting=0.0)


def test_update_cost_benchmark_runs() -> None:
    assert 0 < update_cost_per_exposure(200) < 1.0
