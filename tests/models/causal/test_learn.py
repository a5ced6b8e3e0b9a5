"""Exact incremental learning, calibration against a known truth, convergence, change detection."""

from __future__ import annotations

import numpy as np
import pytest

from causalscope.models.causal.bench import update_cost_per_exposure
from causalscope.models.causal.graph import causal_graph, edge_priors
from causalscope.models.causal.learn import (
    BayesianLinearModel,
    CausalLearner,
    ChangeDetector,
    nig_posterior,
)
from causalscope.models.causal.synthetic import TRUE_WEIGHTS, draw_synthetic_session

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
    # 20 new grids at exposure 300 (ice 35 -> 100 nm, ice weight doubled). In one session
    # (seed 300) the old weights, extrapolated, predict most of the jump and no change is
    # declared; there the learner must follow the new regime anyway (not be blinded).
    detected = 0
    for seed in range(20):
        s = draw_synthetic_session(n_exposures=600, seed=300 + seed, change_at=300)
        learner = CausalLearner(BayesianLinearModel.from_graph(GRAPH))
        residuals = []
        for i, (row, value) in enumerate(zip(s.x, s.y, strict=True)):
            if i >= 500:
                residuals.append(learner.model.residual(row, float(value)))
            learner.observe(row, float(value))
        assert all(c >= 300 for c in learner.changes), f"seed {seed}: {learner.changes}"
        assert len(learner.changes) <= 1, f"seed {seed}: false alarms {learner.changes}"
        detected += bool(learner.changes) and learner.changes[0] < 320
        assert abs(float(np.mean(residuals))) < 0.5, f"seed {seed}: blinded"
        if learner.changes:
            # The new regime's ice weight (doubled) is learned after the old evidence is tempered.
            ice = NAMES.index("ice_thickness")
            err = learner.model.mean[ice] - s.true_weights[-1, ice]
            assert abs(err) < 3 * learner.model.sd()[ice] + 0.05 * s.true_weights[-1, ice]
    assert detected >= 19


def test_false_alarms_are_rare_without_a_change() -> None:
    # CUSUM with k = 0.5, h = 12: about one false alarm per 80,000 exposures of the null (see
    # the next test), so none is expected in 10 x 1000 exposures.
    alarms = 0
    for seed in range(10):
        s = draw_synthetic_session(n_exposures=1000, seed=400 + seed)
        learner = CausalLearner(BayesianLinearModel.from_graph(GRAPH))
        for row, value in zip(s.x, s.y, strict=True):
            learner.observe(row, float(value))
        alarms += len(learner.changes)
    assert alarms == 0


def test_change_statistic_is_standard_normal_on_a_session_that_does_not_change() -> None:
    # The window's z must be N(0, 1) under the null, creeping astigmatism and young model
    # included: that is what lets a fixed threshold mean a fixed false-alarm rate.
    zs = []
    for seed in range(4):
        s = draw_synthetic_session(n_exposures=500, seed=500 + seed)
        learner = CausalLearner(BayesianLinearModel.from_graph(GRAPH))
        for i, (row, value) in enumerate(zip(s.x, s.y, strict=True)):
            learner.observe(row, float(value))
            if i % 20 == 19:  # disjoint windows: independent draws
                rows = np.stack([r for r, _, _ in learner._window])
                values = np.array([v for _, v, _ in learner._window])
                zs.append(learner.detector.statistic(learner.reference, rows, values))
    z = np.array(zs)
    assert z.size == 100
    assert abs(z.mean()) < 0.3 and 0.8 < z.std() < 1.2
    assert np.mean(np.abs(z) > 2.0) < 0.12


def test_forgetting_follows_a_drifting_weight_that_full_memory_misses() -> None:
    s = draw_synthetic_session(
        n_exposures=800, seed=5, change_at=400, changed_weights={"drift": 0.45}
    )
    drift = NAMES.index("drift")
    full = _fit(s.x, s.y)
    forgetful = _fit(s.x, s.y, forgetting=0.98)
    assert abs(forgetful.mean[drift] - 0.45) < 0.05
    assert abs(full.mean[drift] - 0.45) > 2 * abs(forgetful.mean[drift] - 0.45)


def test_a_wild_fit_is_not_learned_and_raises_no_alarm() -> None:
    s = draw_synthetic_session(n_exposures=260, seed=600)
    y = s.y.copy()
    y[150] += 50 * 1.5  # one wild fit: 50 noise sds
    learner = CausalLearner(BayesianLinearModel.from_graph(GRAPH))
    clean = CausalLearner(BayesianLinearModel.from_graph(GRAPH))
    for row, value, good in zip(s.x, y, s.y, strict=True):
        learner.observe(row, float(value))
        clean.observe(row, float(good))
    assert learner.outliers == [150] and not learner.changes and not clean.outliers
    # the noise estimate (and every interval) is that of the session without the wild fit
    assert learner.model.b == pytest.approx(clean.model.b - 0.0, rel=0.05)


def test_a_sustained_shift_is_declared_and_then_learned() -> None:
    s = draw_synthetic_session(n_exposures=300, seed=601)
    y = s.y.copy()
    y[200:] += 3 * 1.5  # from 200 on, every fit 3 noise sds worse
    learner = CausalLearner(BayesianLinearModel.from_graph(GRAPH))
    for row, value in zip(s.x, y, strict=True):
        learner.observe(row, float(value))
    assert len(learner.changes) == 1 and 200 <= learner.changes[0] < 210, learner.changes
    last = [
        learner.model.residual(row, float(v)) for row, v in zip(s.x[-50:], y[-50:], strict=True)
    ]
    assert abs(float(np.mean(last))) < 0.5


def test_change_detector_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="window"):
        ChangeDetector(window=0)


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
