"""V and HyperScore, exactly as the design writes them, with the terms that drove each score.

    V = w1*LogicScore + w2*Novelty + w3*log(ImpactFore + 1) + w4*DeltaRepro + w5*Meta
    HyperScore = 100 * [1 + (sigmoid(beta*ln(V) + gamma))^kappa]

Every component is normalised to ``(0, 1]`` (clipped at :data:`FLOOR` from below) so that
``ln(V)`` is defined; ``log`` is the natural logarithm, so the ImpactFore term lies in
``(0, ln 2]``. A component that was not measured for this subject (no reconstruction yet, no
index) is left out and the weights of those present are scaled so that they keep their sum:
V stays on one scale as the session fills in. HyperScore lies in ``(100, 200]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "COMPONENTS",
    "FLOOR",
    "HyperParameters",
    "Score",
    "ScoreComponents",
    "ScoreWeights",
    "combine",
    "hyperscore",
]

#: smallest value a component takes, so that ln(V) is finite
FLOOR = 1e-3
#: component names, in the formula's order
COMPONENTS = ("logic", "novelty", "impact", "delta_repro", "meta")


@dataclass(frozen=True)
class ScoreWeights:
    """w1..w5 of V (non-negative; the defaults weigh the terms equally)."""

    logic: float = 0.2
    novelty: float = 0.2
    impact: float = 0.2
    delta_repro: float = 0.2
    meta: float = 0.2

    def __post_init__(self) -> None:
        for name in COMPONENTS:
            if not getattr(self, name) >= 0:
                raise ValueError(f"weight {name} must be >= 0, got {getattr(self, name)}")
        if sum(self.as_tuple()) <= 0:
            raise ValueError(f"at least one weight must be positive, got {self.as_tuple()}")

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(float(getattr(self, name)) for name in COMPONENTS)


@dataclass(frozen=True)
class HyperParameters:
    """beta, gamma, kappa of HyperScore; the defaults are the settings' (``ScoringSettings``):
    the sigmoid's midpoint at V = 0.7 (HyperScore 150 there), kappa 1."""

    beta: float = 5.0
    gamma: float = -5.0 * math.log(0.7)
    kappa: float = 1.0


@dataclass(frozen=True)
class ScoreComponents:
    """The five components, each in ``(0, 1]`` or ``None`` (not measured)."""

    logic: float | None = None
    novelty: float | None = None
    impact: float | None = None
    delta_repro: float | None = None
    meta: float | None = None


@dataclass(frozen=True)
class Score:
    """V, HyperScore and each term's part in V (``terms``: weight times its term, by name)."""

    v: float
    hyperscore: float
    terms: dict[str, float]
    weakest: str | None

    def explain(self) -> str:
        """One line an operator reads: the score and the term that held it down most."""
        parts = ", ".join(f"{name} {value:.3f}" for name, value in self.terms.items())
        lead = f"HyperScore {self.hyperscore:.1f} (V {self.v:.3f}: {parts})"
        return lead if self.weakest is None else f"{lead}; held down most by {self.weakest}"


def _normalised(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"component {name} must be finite, got {value}")
    return min(1.0, max(FLOOR, value))


def hyperscore(v: float, parameters: HyperParameters | None = None) -> float:
    """``100 * [1 + sigmoid(beta * ln(v) + gamma) ** kappa]`` for ``v > 0``."""
    if not v > 0:
        raise ValueError(f"V must be > 0 for ln(V), got {v}")
    p = parameters or HyperParameters()
    z = p.beta * math.log(v) + p.gamma
    sigmoid = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
    return 100.0 * (1.0 + sigmoid**p.kappa)


def combine(
    components: ScoreComponents,
    weights: ScoreWeights | None = None,
    parameters: HyperParameters | None = None,
) -> Score | None:
    """V and HyperScore of ``components`` (``None`` when no component with weight is present)."""
    w = weights or ScoreWeights()
    present = {
        name: _normalised(value, name)
        for name in COMPONENTS
        if (value := getattr(components, name)) is not None and getattr(w, name) > 0
    }
    if not present:
        return None
    scale = sum(w.as_tuple()) / sum(getattr(w, name) for name in present)
    terms: dict[str, float] = {}
    shortfall: dict[str, float] = {}
    for name, value in present.items():
        weight = getattr(w, name) * scale
        term, best = (math.log(value + 1.0), math.log(2.0)) if name == "impact" else (value, 1.0)
        terms[name] = weight * term
        shortfall[name] = weight * (best - term)
    v = sum(terms.values())
    weakest = max(shortfall, key=lambda k: shortfall[k])
    return Score(
        v=v,
        hyperscore=hyperscore(v, parameters),
        terms=terms,
        weakest=weakest if shortfall[weakest] > 1e-9 else None,
    )
