"""Sessions drawn from a KNOWN linear-Gaussian causal model, to test the learner against truth.

The factors follow the structural equations of :mod:`models.simulate.session` with its default
settings (``config.simulation``): ice log-normal per square and per hole around 35 nm, drift
log-normal around 5 px plus 15 px after each stage move, defocus cycled over 0.8-2.0 um holes,
astigmatism creeping 1.5 A per exposure from 120 A, beam tilt from image shift, dose jitter and
Poisson particle counts that fall in ice thinner than the particle. The outcome ``d**2`` is then
exactly ``x @ w + N(0, noise_sd**2)`` in the regressors of
:func:`models.causal.graph.design_matrix`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from causalscope.models.causal.graph import FACTORS, design_matrix
from causalscope.models.records import CausalInputs

__all__ = ["TRUE_WEIGHTS", "SyntheticSession", "draw_synthetic_session"]

TRUE_WEIGHTS: dict[str, float] = {
    "intercept": 7.0,
    "ice_thickness": 5.0,
    "dose": -3.0,
    "drift": 0.15,
    "defocus": 1.5,
    "astigmatism": 0.8,
    "beam_tilt": 2.0,
    "particle_density": -0.6,
}
"""The generating weights (A^2 of d**2 per unit regressor), near the graph's physics priors."""


@dataclass(frozen=True)
class SyntheticSession:
    """Rows ``x (n, p)``, outcomes ``y (n,)`` and the true weights ``(n, p)`` of each exposure."""

    measurements: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    true_weights: np.ndarray
    names: list[str]

    def inputs(self, i: int, *, ssnr_bfactor_angstrom2: float | None = None) -> CausalInputs:
        """Exposure ``i`` as the pipeline hands it to the model (``d = sqrt(y)``)."""
        m = {k: float(v[i]) for k, v in self.measurements.items()}
        return CausalInputs(
            ice_thickness_nm=m["ice_thickness_nm"],
            dose_e_per_a2=m["dose_e_per_a2"],
            total_drift_px=m["total_drift_px"],
            defocus_um=m["defocus_um"],
            astigmatism_angstrom=m["astigmatism_angstrom"],
            beam_tilt_mrad=m["beam_tilt_mrad"],
            n_particles=int(m["n_particles"]),
            fit_resolution_angstrom=math.sqrt(max(float(self.y[i]), 1e-6)),
            ssnr_bfactor_angstrom2=ssnr_bfactor_angstrom2,
        )


def draw_synthetic_session(
    *,
    n_exposures: int,
    seed: int,
    weights: Mapping[str, float] | None = None,
    noise_sd: float = 1.5,
    ice_median_nm: float = 35.0,
    change_at: int | None = None,
    changed_ice_median_nm: float = 100.0,
    changed_weights: Mapping[str, float] | None = None,
) -> SyntheticSession:
    """Draw a session; from exposure ``change_at`` on, a new grid (thicker ice, new weights).

    ``changed_weights`` overrides some of ``weights`` after the change; by default the ice weight
    doubles (the inelastic loss ``exp(t / 350 nm)`` is convex, so thick ice costs more per nm).
    """
    if n_exposures < 1:
        raise ValueError(f"n_exposures must be >= 1, got {n_exposures}")
    rng = np.random.default_rng(seed)
    w = dict(TRUE_WEIGHTS if weights is None else weights)
    names = ["intercept", *(f.name for f in FACTORS)]
    if set(w) != set(names):
        raise ValueError(f"weights must name exactly {names}, got {sorted(w)}")
    holes_per_square, shots = 6, 4
    per_square = holes_per_square * shots
    targets = np.array([0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    ring = [(0.0, 0.0)] + [
        (0.8 * math.cos(2 * math.pi * j / 3), 0.8 * math.sin(2 * math.pi * j / 3)) for j in range(3)
    ]
    i = np.arange(n_exposures)
    square, within = np.divmod(i, per_square)
    hole_in_square, shot = np.divmod(within, shots)
    hole = square * holes_per_square + hole_in_square
    median = np.full(n_exposures, ice_median_nm)
    if change_at is not None:
        median[change_at:] = changed_ice_median_nm
    ice_sq = np.exp(rng.normal(0, 0.35, square.max() + 1))[square]
    ice_hole = np.exp(rng.normal(0, 0.12, hole.max() + 1))[hole]
    ice = np.clip(median * ice_sq * ice_hole, 8.0, 400.0)
    drift = 5.0 * np.exp(rng.normal(0, 0.4, n_exposures)) + 15.0 * (shot == 0)
    defocus = targets[hole % targets.size] + rng.normal(0, 0.04, n_exposures)
    astig = np.abs(120.0 + 1.5 * i + rng.normal(0, 25.0, n_exposures))
    shift = np.array(ring)[shot]
    tilt = np.hypot(0.1 + 0.25 * shift[:, 0], -0.05 + 0.25 * shift[:, 1])
    dose = 40.0 * np.maximum(0.1, 1.0 + rng.normal(0, 0.03, n_exposures))
    diameter_a = 120.0
    room = np.clip((ice * 10.0 - 0.8 * diameter_a) / (0.4 * diameter_a), 0.0, 1.0)
    n_particles = rng.poisson(3000.0 * (1024 * 1.0e-4) ** 2 * room).astype(float)
    measurements = {
        "ice_thickness_nm": ice,
        "dose_e_per_a2": dose,
        "total_drift_px": drift,
        "defocus_um": defocus,
        "astigmatism_angstrom": astig,
        "beam_tilt_mrad": tilt,
        "n_particles": n_particles,
    }
    x = design_matrix(measurements)
    true_w = np.tile(np.array([w[n] for n in names]), (n_exposures, 1))
    if change_at is not None:
        after = dict(w)
        after.update(
            changed_weights
            if changed_weights is not None
            else {"ice_thickness": 2.0 * w["ice_thickness"]}
        )
        true_w[change_at:] = np.array([after[n] for n in names])
    y = np.einsum("np,np->n", x, true_w) + rng.normal(0, noise_sd, n_exposures)
    return SyntheticSession(measurements, x, y, true_w, names)
