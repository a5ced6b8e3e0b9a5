"""The causal model of what limits an exposure: graph, exact Bayesian learning, attribution."""

from causalscope.models.causal.attribution import (
    ADVICE,
    Attribution,
    CauseRank,
    advice,
    attribute,
    best_factors,
    rank_causes,
)
from causalscope.models.causal.envelope import (
    ENVELOPE_FACTORS,
    ENVELOPE_PRIORS,
    EnvelopePrior,
    envelope_row,
)
from causalscope.models.causal.graph import (
    FACTORS,
    OUTCOME,
    FactorSpec,
    causal_graph,
    design_matrix,
    edge_priors,
)
from causalscope.models.causal.inputs import (
    causal_inputs,
    image_shift_um,
    measurements,
    prior_bfactor,
)
from causalscope.models.causal.learn import (
    BayesianLinearModel,
    CausalLearner,
    ChangeDetector,
    NigPosterior,
    nig_posterior,
)
from causalscope.models.causal.session import (
    CausalUpdate,
    CauseShare,
    RankedCause,
    SessionCausalModel,
)

__all__ = [
    "ADVICE",
    "ENVELOPE_FACTORS",
    "ENVELOPE_PRIORS",
    "FACTORS",
    "OUTCOME",
    "Attribution",
    "BayesianLinearModel",
    "CausalLearner",
    "CausalUpdate",
    "CauseRank",
    "CauseShare",
    "ChangeDetector",
    "EnvelopePrior",
    "FactorSpec",
    "NigPosterior",
    "RankedCause",
    "SessionCausalModel",
    "advice",
    "attribute",
    "best_factors",
    "causal_graph",
    "causal_inputs",
    "design_matrix",
    "edge_priors",
    "envelope_row",
    "image_shift_um",
    "measurements",
    "nig_posterior",
    "prior_bfactor",
    "rank_causes",
]
