"""Micrograph triage from the image alone: empty, ice only, crystalline ice, contaminated or
usable, with a probability per class and the reason in physical terms."""

from causalscope.models.triage.classify import (
    TRIAGE_CLASSES,
    TriageResult,
    classify_features,
    triage_micrograph,
)
from causalscope.models.triage.features import (
    TriageFeatures,
    ice_statistics,
    triage_features,
    windowed_ice,
)

__all__ = [
    "TRIAGE_CLASSES",
    "TriageFeatures",
    "TriageResult",
    "classify_features",
    "ice_statistics",
    "triage_features",
    "triage_micrograph",
    "windowed_ice",
]
