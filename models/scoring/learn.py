"""The weights of V learned from the operator's accept/reject labels by Bayesian optimisation.

The objective is how well the score separates accepted from rejected exposures: the area under
the ROC curve of V (HyperScore is increasing in V, so it has the same ROC curve; beta, gamma and
kappa shape the scale an operator reads, not the ranking, and are not learned). The search is
optuna's Tree-structured Parzen Estimator over w1..w5 in [0, 1] (normalised to sum 1), started
from the current weights so that the result is never worse on the labels than what it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from causalscope.models.scoring.combine import COMPONENTS, ScoreComponents, ScoreWeights, combine

__all__ = ["LearnedWeights", "learn_weights", "roc_auc"]


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Probability that a random positive scores above a random negative (ties count half):
    the Mann-Whitney form of the area under the ROC curve."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must match, got {s.shape} and {y.shape}")
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        raise ValueError(
            f"both classes are needed, got {len(pos)} accepted and {len(neg)} rejected"
        )
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


@dataclass(frozen=True)
class LearnedWeights:
    """The weights found, their AUC on the labels, the starting weights' AUC, and the best
    AUC after each trial (the optimiser's convergence)."""

    weights: ScoreWeights
    auc: float
    start_auc: float
    convergence: tuple[float, ...]
    n_labels: int


def _v(components: Sequence[ScoreComponents], weights: ScoreWeights) -> list[float]:
    values = []
    for c in components:
        score = combine(c, weights)
        values.append(0.0 if score is None else score.v)
    return values


def learn_weights(
    components: Sequence[ScoreComponents],
    accepted: Sequence[bool],
    *,
    start: ScoreWeights | None = None,
    n_trials: int = 150,
    seed: int = 0,
) -> LearnedWeights:
    """Weights that maximise the AUC of V on the labelled exposures."""
    import optuna

    if len(components) != len(accepted):
        raise ValueError(
            f"one label per exposure: {len(components)} exposures, {len(accepted)} labels"
        )
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    initial = start or ScoreWeights()
    start_auc = roc_auc(_v(components, initial), accepted)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(20, n_trials))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    total = sum(initial.as_tuple())
    study.enqueue_trial({name: getattr(initial, name) / total for name in COMPONENTS})

    def objective(trial: optuna.Trial) -> float:
        raw = {name: trial.suggest_float(name, 0.0, 1.0) for name in COMPONENTS}
        if sum(raw.values()) <= 1e-6:
            return 0.0
        return roc_auc(_v(components, ScoreWeights(**raw)), accepted)

    study.optimize(objective, n_trials=n_trials)
    best = study.best_trial
    raw = {name: float(best.params[name]) for name in COMPONENTS}
    total = sum(raw.values())
    weights = ScoreWeights(**{name: value / total for name, value in raw.items()})
    values = [t.value if t.value is not None else 0.0 for t in study.trials]
    return LearnedWeights(
        weights=weights,
        auc=float(best.value or 0.0),
        start_auc=start_auc,
        convergence=tuple(float(v) for v in np.maximum.accumulate(values)),
        n_labels=len(accepted),
    )
