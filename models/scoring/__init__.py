"""Scores of exposures and running reconstructions (the design's "Scoring").

- :func:`exposure_obligations`, :func:`reconstruction_obligations`, :func:`logic_score`
  (:mod:`.obligations`): physical-consistency obligations discharged by z3; LogicScore.
- :func:`exposure_facts` (:mod:`.facts`): an exposure record's measured facts.
- :func:`impact_fore`, :func:`contribution_angstrom`, :func:`meta_stability`,
  :func:`ranking_stability` (:mod:`.stability`): ImpactFore, an exposure's expected
  contribution in Angstrom, and Meta.
- :func:`combine`, :func:`hyperscore` (:mod:`.combine`): V and HyperScore, exactly as written.
"""

from causalscope.models.scoring._solver import Measured, ObligationResult
from causalscope.models.scoring.combine import (
    COMPONENTS,
    HyperParameters,
    Score,
    ScoreComponents,
    ScoreWeights,
    combine,
    hyperscore,
)
from causalscope.models.scoring.facts import closest_pair_px, exposure_facts
from causalscope.models.scoring.obligations import (
    ExposureFacts,
    ObligationSettings,
    ReconstructionFacts,
    exposure_obligations,
    logic_score,
    reconstruction_obligations,
)
from causalscope.models.scoring.stability import (
    contribution_angstrom,
    impact_fore,
    meta_stability,
    overlapping_picks,
    ranking_stability,
    signal_weight,
)

__all__ = [
    "COMPONENTS",
    "ExposureFacts",
    "HyperParameters",
    "Measured",
    "ObligationResult",
    "ObligationSettings",
    "ReconstructionFacts",
    "Score",
    "ScoreComponents",
    "ScoreWeights",
    "closest_pair_px",
    "combine",
    "contribution_angstrom",
    "exposure_facts",
    "exposure_obligations",
    "hyperscore",
    "impact_fore",
    "logic_score",
    "meta_stability",
    "overlapping_picks",
    "ranking_stability",
    "reconstruction_obligations",
    "signal_weight",
]
