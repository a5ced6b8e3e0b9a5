"""How exposures and running reconstructions are scored (the design's "Scoring")."""

from __future__ import annotations

import math

from pydantic import Field

from causalscope.config._common import Section

__all__ = ["ScoringSettings"]


class ScoringSettings(Section):
    """V = w1*LogicScore + w2*Novelty + w3*log(ImpactFore + 1) + w4*DeltaRepro + w5*Meta and
    HyperScore = 100 * [1 + (sigmoid(beta*ln(V) + gamma))^kappa]."""

    enabled: bool = Field(True, description="Score each exposure and reconstruction update.")
    delta_repro: bool = Field(
        True,
        description=(
            "Refit the CTF and the picks on the even and odd half sums of each exposure, and "
            "align the even and the odd frames each on their own, for DeltaRepro (costs two "
            "more CTF fits, two pickings and about half a global alignment per exposure)."
        ),
    )
    repro_resolution_angstrom: float = Field(
        3.0,
        gt=0,
        le=100,
        description=(
            "DeltaRepro's scale for defocus: the defocus error that costs a 45 degree CTF phase "
            "error at this resolution (114 A at 3 A and 300 kV) counts as one."
        ),
    )
    triage: bool = Field(
        True,
        description=(
            "Triage each micrograph from the image alone (empty, ice only, crystalline ice, "
            "contaminated, usable); its probability of being usable is the exposure's Novelty."
        ),
    )
    w_logic: float = Field(0.2, ge=0, le=100, description="w1: weight of LogicScore.")
    w_novelty: float = Field(0.2, ge=0, le=100, description="w2: weight of Novelty.")
    w_impact: float = Field(0.2, ge=0, le=100, description="w3: weight of log(ImpactFore + 1).")
    w_delta_repro: float = Field(0.2, ge=0, le=100, description="w4: weight of DeltaRepro.")
    w_meta: float = Field(0.2, ge=0, le=100, description="w5: weight of Meta.")
    beta: float = Field(
        5.0, gt=0, le=100, description="Steepness of HyperScore's sigmoid in ln(V)."
    )
    gamma: float = Field(
        round(-5.0 * math.log(0.7), 6),
        ge=-100,
        le=100,
        description="Offset: the sigmoid's midpoint is at ln(V) = -gamma/beta (V = 0.7).",
    )
    kappa: float = Field(
        1.0, gt=0, le=100, description="Power of the sigmoid: above 1 stretches the top."
    )
    sigmas: float = Field(
        2.0,
        gt=0,
        le=10,
        description="An obligation fails only when no value within this many sigmas holds.",
    )
    min_spacing_diameters: float = Field(
        0.45, gt=0, le=2, description="Picks closer than this many diameters overlap."
    )
    dose_tolerance: float = Field(
        0.25,
        gt=0,
        le=10,
        description="Relative difference allowed between the metadata's and the measured dose.",
    )
    max_drift_rate_angstrom_per_s: float = Field(
        50.0, gt=0, le=1e6, description="Fastest specimen motion the stage and beam allow."
    )
    class_margin: float = Field(
        0.5,
        gt=0,
        le=1,
        description="The map may be better than the best 2D class by at most this factor.",
    )
    symmetry_correlation: float = Field(
        0.8, ge=-1, le=1, description="Least self-correlation of the map under its symmetry."
    )
    impact_resolution_angstrom: float = Field(
        6.0,
        gt=0,
        le=100,
        description=(
            "ImpactFore weighs each exposure's particles by their signal at this resolution "
            "(from its CTF fit resolution)."
        ),
    )
    overlap_diameters: float = Field(
        0.9,
        ge=0,
        le=2,
        description=(
            "ImpactFore leaves out the picks whose nearest other pick is closer than this many "
            "particle diameters: projections that overlap (aggregates, particles stacked in "
            "the ice) do not add to a reconstruction (0: count every pick)."
        ),
    )
    accept_above: float = Field(
        150.0,
        ge=100,
        le=200,
        description="Recommend accepting an exposure whose HyperScore is at least this.",
    )
    reject_below: float = Field(
        120.0,
        ge=100,
        le=200,
        description=(
            "Recommend rejecting an exposure whose HyperScore is below this, whose gate failed "
            "or which broke an obligation; in between: look at it."
        ),
    )
    learn_min_labels: int = Field(
        20,
        ge=4,
        le=1_000_000,
        description=(
            "Learn the weights from the operator's accept/reject labels once this many scored "
            "exposures are labelled (both verdicts present); the defaults above until then."
        ),
    )
    learn_every: int = Field(
        5, ge=1, le=1_000_000, description="Learn again after this many new labels."
    )
    learn_trials: int = Field(
        100, ge=1, le=100_000, description="Trials of the Bayesian optimisation per learning."
    )
    meta_window: int = Field(
        20, ge=6, le=10_000, description="Exposures over which Meta compares V."
    )

    @property
    def refits_halves(self) -> bool:
        """Whether each exposure's halves are refitted for DeltaRepro."""
        return self.enabled and self.delta_repro
