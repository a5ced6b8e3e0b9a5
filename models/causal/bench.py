"""Benchmark of the learner's update cost (a number to report, not a timed test)."""

from __future__ import annotations

import time

from causalscope.models.causal.graph import causal_graph
from causalscope.models.causal.learn import BayesianLinearModel
from causalscope.models.causal.synthetic import draw_synthetic_session

__all__ = ["update_cost_per_exposure"]


def update_cost_per_exposure(n: int = 10_000, *, seed: int = 0) -> float:
    """Mean wall time in seconds of one :meth:`BayesianLinearModel.update` over ``n`` exposures."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    session = draw_synthetic_session(n_exposures=n, seed=seed)
    model = BayesianLinearModel.from_graph(causal_graph())
    start = time.perf_counter()
    for x, y in zip(session.x, session.y, strict=True):
        model.update(x, float(y))
    return (time.perf_counter() - start) / n
