"""The causal model of what limits an exposure: graph, exact Bayesian learning, attribution."""

from models.causal.attribution import (
    ADVICE,
    Attribution,
    CauseRank,
    advice,
    attribute,
    best_factors,
    rank_causes,
)
from models.causal.graph import (
    FACTORS,
    OUTCOME,
    FactorSpec,
    causal_graph,
    design_matrix,
    edge_priors,
)
from models.causal.learn import (
    BayesianLinearModel,
    CausalLearner,
    ChangeDetector,
    NigPosterior,
    nig_posterior,
)

__all__ = [
    "ADVICE",
    "FACTORS",
    "OUTCOME",
    "Attribution",
    "BayesianLinearModel",
    "CausalLearner",
    "CauseRank",
    "ChangeDetector",
    "FactorSpec",
    "NigPosterior",
    "advice",
    "attribute",
    "best_factors",
    "causal_graph",
    "design_matrix",
    "edge_priors",
    "nig_posterior",
    "rank_causes",
]
