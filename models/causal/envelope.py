"""The envelope model: an exposure's spectral-SNR B-factor from its factors, for the Wiener filter.

The Wiener filter's SNR (:mod:`models.restoration.ssnr`) has one non-linear parameter, the
power B-factor ``B`` of the specimen's signal (``exp(-B k**2 / 2)``), which each exposure fits
to its own spectrum. On a faint exposure that fit is noisy. Physically ``B`` is the
``envelope_bfactor`` node of the causal graph: it grows with drift (blur that motion correction
cannot undo), with ice (charging) and with defocus (the spatial-coherence envelope), and the
dose-weighted sum's damage term moves with the dose. So the session learns
``B = x @ w_B + e`` over the exposures' own fits, with the same exact conjugate updates as the
resolution model, and an exposure's prior ``B`` is the posterior mean for its factors: the
average of every earlier exposure's fit, weighted by how alike their factors are.

The regressors are those of :func:`models.causal.graph.design_matrix` without the particle
count, which is only known after restoration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from causalscope.models.causal._measurements import measurements
from causalscope.models.causal.graph import design_matrix
from causalscope.models.records import CausalInputs

__all__ = ["ENVELOPE_FACTORS", "ENVELOPE_PRIORS", "EnvelopePrior", "envelope_row"]

ENVELOPE_FACTORS: tuple[str, ...] = (
    "intercept",
    "ice_thickness",
    "dose",
    "drift",
    "defocus",
    "astigmatism",
    "beam_tilt",
)
"""Weights of the envelope model, in the column order of :func:`envelope_row`."""

ENVELOPE_PRIORS: dict[str, tuple[float, float, str]] = {
    "intercept": (
        150.0,
        150.0,
        "B of a still, thin specimen lumps the detector MTF, the particles' own spectrum and "
        "damage: tens to a few hundred A^2 (Rosenthal & Henderson 2003, J Mol Biol 333:721)",
    ),
    "ice_thickness": (
        20.0,
        60.0,
        "charging and beam-induced motion grow with ice, ~0.2 A^2 per nm (per 100 nm: 20) "
        "(Brilot et al. 2012, J Struct Biol 177:630)",
    ),
    "dose": (
        0.0,
        100.0,
        "dose weighting keeps the early, undamaged frames at high frequency; the sum's B "
        "moves little with dose (Grant & Grigorieff 2015, eLife 4:e06980)",
    ),
    "drift": (
        0.8,
        5.0,
        "intra-frame blur of uncorrected drift, ~0.8 A^2 per px of path "
        "(Zheng et al. 2017, Nat Methods 14:331)",
    ),
    "defocus": (
        0.0,
        50.0,
        "the spatial-coherence envelope acts as a B growing with defocus "
        "(Wade 1992, Ultramicroscopy 46:145)",
    ),
    "astigmatism": (0.0, 30.0, "residual astigmatism blurs the ring average"),
    "beam_tilt": (0.0, 30.0, "axial coma blurs the ring average (Glaeser et al. 2011)"),
}
"""Prior (mean, sd, source) of each envelope weight, A^2 per unit regressor."""

_COLUMNS = [0, 1, 2, 3, 4, 5, 6]  # design_matrix's columns without n_particles (the last)


def envelope_row(measurements: Mapping[str, float]) -> np.ndarray:
    """The envelope model's regressors ``(7,)`` for one exposure (no ``n_particles`` needed)."""
    values = dict(measurements)
    values.setdefault("n_particles", 0.0)
    return design_matrix(values)[0, _COLUMNS]


@dataclass(frozen=True)
class EnvelopePrior:
    """The envelope model's posterior, as sent to the exposure actors.

    ``mean (p,)`` and ``cov (p, p)`` are the weights' posterior mean and (marginal) covariance;
    ``residual_sd`` the scatter of the exposures' own fits around the model (posterior mean of
    the noise sd: real exposure-to-exposure variation plus the fits' own noise);
    ``n_exposures`` the fits learned from.
    """

    names: tuple[str, ...]
    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    residual_sd: float
    n_exposures: int

    def predict(self, measurements: Mapping[str, float]) -> tuple[float, float]:
        """``(B, sd)``: the posterior mean B for these factors and its sd (of the mean)."""
        x = envelope_row(measurements)
        w = np.asarray(self.mean, dtype=float)
        cov = np.asarray(self.cov, dtype=float)
        if x.size != w.size:
            raise ValueError(f"the prior has {w.size} weights, the row {x.size}")
        return float(x @ w), math.sqrt(max(float(x @ cov @ x), 0.0))

    def bounds(self, inputs: CausalInputs, *, z: float) -> tuple[float, float]:
        """``B -+ z`` predictive sd for these factors: where an exposure's own fit should lie."""
        b, sd = self.predict_inputs(inputs)
        spread = z * math.sqrt(sd * sd + self.residual_sd * self.residual_sd)
        return max(b - spread, 0.0), b + spread

    def predict_inputs(self, inputs: CausalInputs) -> tuple[float, float]:
        """:meth:`predict` for one exposure's :class:`~models.records.CausalInputs`."""
        return self.predict(measurements(inputs))
