"""Weights learned from labels: the AUC against reference values, and Bayesian optimisation
that finds the informative component on labels and keeps its gain on exposures it never saw."""

from __future__ import annotations

import numpy as np
import pytest

from causalscope.models.scoring import ScoreComponents, ScoreWeights
from causalscope.models.scoring.learn import learn_weights, roc_auc


def test_roc_auc_reference_values() -> None:
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5  # a tie counts half
    # scikit-learn's documented example: y = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8] -> 0.75
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0.3, 0.4], [True, True])


def _labelled(rng: np.random.Generator, n: int) -> tuple[list[ScoreComponents], list[bool]]:
    """Good exposures differ from bad ones only in DeltaRepro; Meta and LogicScore are
    noise that, weighted equally, drowns it."""
    good = rng.random(n) < 0.5
    components = [
        ScoreComponents(
            logic=float(rng.uniform(0.2, 1.0)),
            delta_repro=float(np.clip(rng.normal(0.75 if g else 0.55, 0.08), 0.01, 1)),
            meta=float(rng.uniform(0.05, 1.0)),
        )
        for g in good
    ]
    return components, [bool(g) for g in good]


def test_learned_weights_beat_the_defaults_on_exposures_not_learned_from() -> None:
    rng = np.random.default_rng(0)
    train, train_labels = _labelled(rng, 40)
    test, test_labels = _labelled(rng, 200)
    learned = learn_weights(train, train_labels, n_trials=80, seed=0)
    assert learned.auc >= learned.start_auc  # started from the defaults: never worse on labels
    assert list(learned.convergence) == sorted(learned.convergence)
    assert len(learned.convergence) == 80 and learned.n_labels == 40
    w = learned.weights
    assert w.delta_repro > max(w.logic, w.meta)
    assert sum(w.as_tuple()) == pytest.approx(1.0)

    def auc(weights: ScoreWeights) -> float:
        from causalscope.models.scoring import combine

        values = [combine(c, weights).v for c in test]  # type: ignore[union-attr]
        return roc_auc(values, test_labels)

    assert auc(w) > auc(ScoreWeights()) + 0.1
    assert auc(w) > 0.9
