"""Triage of one micrograph from its statistics: a chain of calibrated physical tests.

Each test turns one statistic of :mod:`models.triage.features` into a probability with a
logistic of stated threshold and width (calibrated on the simulator's triage scenes,
:mod:`models.simulate.triage_scenes`, and checked on the real micrographs of the picking data):

1. ``empty``: no power above the white floor (``structure_excess`` < 0.08): nothing scattered.
2. ``crystalline_ice``: Bragg spots at 3.35-4.05 A (``ice_spot_ratio`` > 1.8: the brightest
   value 1.8 times the maximum that noise reaches), only where Nyquist allows.
3. ``contaminated``: the local mean (100 A) spans more than 4 % of the intensity between its
   3rd and 97th percentiles after a plane (``local_mean_range``: dense bodies, carbon film,
   cracks covering more than ~3 % of the field; particles and ice gradients span 0.4-2.5 % in
   the simulated and real micrographs), or a directional loss of signal (``anisotropy`` <
   0.35: drift during the exposure).
4. ``usable`` against ``ice_only``: localised bodies at 30-200 A (``blob_kurtosis`` above a
   threshold of 0.08, raised as 2500 A / field width for fields narrower than 2500 A, where
   the statistic of a Gaussian field scatters more).

The class probabilities follow the chain: ``P(empty) = p1``, ``P(crystalline) = (1 - p1) p2``,
and so on; they sum to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from causalscope.models.triage.features import TriageFeatures, triage_features

__all__ = ["TRIAGE_CLASSES", "TriageResult", "classify_features", "triage_micrograph"]

TRIAGE_CLASSES = ("empty", "ice_only", "crystalline_ice", "contaminated", "usable")

EMPTY_EXCESS = 0.08
ICE_SPOT_RATIO = 1.8
LOCAL_MEAN_RANGE = 0.04
DRIFT_ANISOTROPY = 0.35
BLOB_KURTOSIS = 0.08
#: the kurtosis threshold holds for fields of this width or more; below, it grows as 1/width
#: (fewer independent 30-200 A patches: the statistic of a Gaussian field scatters more)
_REFERENCE_FIELD_ANGSTROM = 2500.0


@dataclass(frozen=True)
class TriageResult:
    """The verdict on one micrograph: its class, a probability per class, and why."""

    label: str
    scores: dict[str, float]
    reason: str
    features: TriageFeatures
    tests: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values."""
        return {
            "label": self.label,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "reason": self.reason,
            "features": self.features.to_dict(),
            "tests": {k: round(v, 4) for k, v in self.tests.items()},
        }


def _above(value: float, threshold: float, width: float) -> float:
    return 1.0 / (1.0 + math.exp(-(value - threshold) / width))


def triage_micrograph(image: np.ndarray, *, pixel_size_angstrom: float) -> TriageResult:
    """Classify an ``(h, w)`` micrograph (any gain, offset, bit depth) into
    :data:`TRIAGE_CLASSES`."""
    features = triage_features(image, pixel_size_angstrom=pixel_size_angstrom)
    return classify_features(features, side_px=min(np.shape(image)))


def classify_features(f: TriageFeatures, *, side_px: int | None = None) -> TriageResult:
    """The chain of tests of the module docstring applied to ``f`` of an image ``side_px``
    wide (its smaller side; default 1024)."""
    field_a = (side_px or 1024) * f.pixel_size_angstrom
    kurtosis_threshold = BLOB_KURTOSIS * max(1.0, _REFERENCE_FIELD_ANGSTROM / field_a)
    p_empty = _above(-f.structure_excess, -EMPTY_EXCESS, 0.02)
    p_crystal = 0.0 if f.ice_spot_ratio is None else _above(f.ice_spot_ratio, ICE_SPOT_RATIO, 0.1)
    p_body = _above(f.local_mean_range, LOCAL_MEAN_RANGE, 0.003)
    p_drift = _above(-f.anisotropy, -DRIFT_ANISOTROPY, 0.04)
    p_contam = 1.0 - (1.0 - p_body) * (1.0 - p_drift)
    p_particles = _above(f.blob_kurtosis, kurtosis_threshold, 0.02)
    rest = 1.0 - p_empty
    scores = {"empty": p_empty, "crystalline_ice": rest * p_crystal}
    rest *= 1.0 - p_crystal
    scores["contaminated"] = rest * p_contam
    rest *= 1.0 - p_contam
    scores["usable"] = rest * p_particles
    scores["ice_only"] = rest * (1.0 - p_particles)
    label = max(scores, key=lambda k: scores[k])
    tests = {
        "empty": p_empty,
        "crystalline": p_crystal,
        "dense_body": p_body,
        "drift": p_drift,
        "particles": p_particles,
    }
    ordered = {k: scores[k] for k in TRIAGE_CLASSES}
    return TriageResult(label, ordered, _reason(label, f, p_body, kurtosis_threshold), f, tests)


def _reason(label: str, f: TriageFeatures, p_body: float, kurtosis_threshold: float) -> str:
    power = f"power above the white floor {f.structure_excess:+.2f}"
    if label == "empty":
        counts = (
            f"; noise floor = {f.noise_to_mean:.2f} x the mean (shot noise only)"
            if 0.8 < f.noise_to_mean < 1.25
            else ""
        )
        return f"no scattering: {power} (< {EMPTY_EXCESS}), no Thon rings{counts}"
    if label == "crystalline_ice":
        return (
            f"Bragg spots at 3.4-4.0 A: brightest {f.ice_spot_ratio:.1f} x the noise maximum "
            f"(> {ICE_SPOT_RATIO}); ice ring {f.ice_ring_ratio:.2f} x its neighbours"
        )
    if label == "contaminated":
        if p_body >= 0.5:
            kind = "dark dense bodies" if f.anomaly_sign < 0 else "bright gaps (cracks, no ice)"
            return (
                f"{kind}: the 100-A local mean spans {100 * f.local_mean_range:.1f} % of the "
                f"intensity (> {100 * LOCAL_MEAN_RANGE:.0f} %); "
                f"{100 * f.anomaly_fraction:.0f} % of the field changed by over 2.5 %"
            )
        return (
            f"drift blur: signal power along the weakest direction {f.anisotropy:.2f} x the "
            f"strongest (< {DRIFT_ANISOTROPY})"
        )
    crystal = "" if f.ice_spot_ratio is None else f", ice spots {f.ice_spot_ratio:.1f}"
    if label == "usable":
        return (
            f"particles: 30-200 A bodies, kurtosis {f.blob_kurtosis:.2f} "
            f"(> {kurtosis_threshold:.2f}); {power}; isotropy {f.anisotropy:.2f}; "
            f"local mean range {100 * f.local_mean_range:.1f} %{crystal}"
        )
    return (
        f"ice without particles: {power} but Gaussian texture at 30-200 A "
        f"(kurtosis {f.blob_kurtosis:.2f} <= {kurtosis_threshold:.2f}){crystal}"
    )
