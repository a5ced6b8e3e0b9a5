"""A simulated session drawn from a known causal graph of what degrades an exposure.

The acquisition walks grid squares; in each square it visits foil holes (a stage move each)
and takes several shots per hole by image shift. Factors follow structural equations whose
effect sizes are settings (``config.simulation.SimulationSettings``), so the causal model can
be checked against the truth:

=====================  =====================================================================
factor                 structural equation
=====================  =====================================================================
square ice             ``ice_sq = ice_median * exp(N(0, ice_square_log_sd))``
ice_thickness_nm       ``ice_sq * exp(N(0, ice_hole_log_sd))`` per hole (shots share it)
n_particles            ``Poisson(density * area * clip((t - 0.8 d) / (0.4 d), 0, 1))``:
                       ice thinner than the particle diameter d squeezes particles out
drift_total_px         ``LogNormal(drift_median, 0.4) + drift_after_stage_move`` on shot 0
defocus                the hole's target from the cycled list ``+ N(0, defocus_error)``
astigmatism            ``start + creep * i + N(0, noise)``; its angle a random walk
beam tilt              ``offset + beam_tilt_per_shift * beam_shift`` of the shot
bfactor_angstrom2      ``base + per_drift * drift_total + per_ice * ice``
broken, aggregates     per square, ``Beta`` around the configured means
dose_e_per_a2          ``nominal * (1 + N(0, jitter))``
=====================  =====================================================================

Downstream, physics (not equations) turns these into image quality: ice -> inelastic
amplitude loss and solvent noise; dose and detector -> shot noise; drift and damage -> an
envelope; defocus, astigmatism and beam tilt -> CTF and aberration loss; heterogeneity and
density -> signal in averages. :func:`causal_graph` returns the whole graph.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx
import numpy as np

from causalscope.models.simulate.exposure import ExposureParameters

__all__ = ["ExposurePlan", "SessionSettings", "causal_graph", "draw_session", "factor_summary"]


class SessionSettings(Protocol):
    """The fields of ``config.simulation.SimulationSettings`` that a session needs."""

    size_px: int
    n_frames: int
    dose_e_per_a2: float
    dose_jitter_fraction: float
    holes_per_square: int
    exposures_per_hole: int
    beam_shift_um: float
    ice_median_nm: float
    ice_square_log_sd: float
    ice_hole_log_sd: float
    defocus_targets_um: list[float]
    defocus_error_um: float
    astigmatism_start_angstrom: float
    astigmatism_creep_angstrom: float
    astigmatism_noise_angstrom: float
    astigmatism_angle_walk_deg: float
    drift_median_px: float
    drift_after_stage_move_px: float
    drift_decay_frames: float
    drift_jitter_px: float
    local_motion_px: float
    beam_tilt_offset_mrad: tuple[float, float]
    beam_tilt_per_shift_mrad_per_um: float
    particles_per_um2: float
    broken_fraction: float
    aggregate_fraction: float
    bfactor_base_angstrom2: float
    bfactor_per_drift_px: float
    bfactor_per_ice_nm: float
    phase_shift_deg: float


@dataclass(frozen=True)
class ExposurePlan:
    """One exposure of the session: where it was taken and what generated it."""

    index: int
    grid_square: int
    foil_hole: int
    shot: int
    stage_move: bool
    beam_shift_um: tuple[float, float]
    target_defocus_um: float
    parameters: ExposureParameters

    def factors(self) -> dict[str, Any]:
        """The acquisition-side factors, for the truth file."""
        return {
            "exposure_index": self.index,
            "grid_square": self.grid_square,
            "foil_hole": self.foil_hole,
            "shot": self.shot,
            "stage_move": self.stage_move,
            "beam_shift_um": list(self.beam_shift_um),
            "target_defocus_um": self.target_defocus_um,
        }


def _shot_offsets(n_shots: int, radius_um: float) -> list[tuple[float, float]]:
    """Image-shift pattern: the centre first, then a ring (EPU's multi-shot layout)."""
    if n_shots == 1:
        return [(0.0, 0.0)]
    ring = [
        (
            radius_um * math.cos(2 * math.pi * j / (n_shots - 1)),
            radius_um * math.sin(2 * math.pi * j / (n_shots - 1)),
        )
        for j in range(n_shots - 1)
    ]
    return [(0.0, 0.0), *ring]


def draw_session(
    settings: SessionSettings,
    *,
    n_exposures: int,
    base: ExposureParameters,
    particle_diameter_angstrom: float,
    seed: int,
) -> list[ExposurePlan]:
    """Draw ``n_exposures`` exposures; ``base`` supplies the microscope's fixed parameters."""
    if n_exposures < 0:
        raise ValueError(f"n_exposures must be >= 0, got {n_exposures}")
    rng = np.random.default_rng(seed)
    shots = settings.exposures_per_hole
    per_square = settings.holes_per_square * shots
    offsets = _shot_offsets(shots, settings.beam_shift_um)
    area_um2 = (settings.size_px * base.pixel_size_angstrom * 1e-4) ** 2
    d = particle_diameter_angstrom
    plans: list[ExposurePlan] = []
    square_ice = square_broken = square_aggregate = 0.0
    hole_ice = 0.0
    astig_angle = float(rng.uniform(0, 180))
    for i in range(n_exposures):
        square, within = divmod(i, per_square)
        hole_in_square, shot = divmod(within, shots)
        hole = square * settings.holes_per_square + hole_in_square
        if within == 0:
            square_ice = settings.ice_median_nm * math.exp(
                rng.normal(0, settings.ice_square_log_sd)
            )
            square_broken = _beta_around(rng, settings.broken_fraction)
            square_aggregate = _beta_around(rng, settings.aggregate_fraction)
        if shot == 0:
            hole_ice = square_ice * math.exp(rng.normal(0, settings.ice_hole_log_sd))
        ice = float(np.clip(hole_ice, 8.0, 400.0))
        target = settings.defocus_targets_um[hole % len(settings.defocus_targets_um)]
        defocus_a = 1e4 * (target + rng.normal(0, settings.defocus_error_um))
        astig = abs(
            settings.astigmatism_start_angstrom
            + settings.astigmatism_creep_angstrom * i
            + rng.normal(0, settings.astigmatism_noise_angstrom)
        )
        astig_angle = (astig_angle + rng.normal(0, settings.astigmatism_angle_walk_deg)) % 180
        stage_move = shot == 0
        drift = settings.drift_median_px * math.exp(rng.normal(0, 0.4))
        if stage_move:
            drift += settings.drift_after_stage_move_px
        shift = offsets[shot]
        tilt_x = (
            settings.beam_tilt_offset_mrad[0] + settings.beam_tilt_per_shift_mrad_per_um * shift[0]
        )
        tilt_y = (
            settings.beam_tilt_offset_mrad[1] + settings.beam_tilt_per_shift_mrad_per_um * shift[1]
        )
        room = float(np.clip((ice * 10.0 - 0.8 * d) / (0.4 * d), 0.0, 1.0))
        n_particles = int(rng.poisson(settings.particles_per_um2 * area_um2 * room))
        params = _parameters(
            rng,
            settings,
            base,
            ice=ice,
            defocus_angstrom=defocus_a,
            astigmatism_angstrom=astig,
            astigmatism_angle_deg=astig_angle,
            drift_px=drift,
            beam_tilt_mrad=(tilt_x, tilt_y),
            n_particles=n_particles,
            broken_fraction=square_broken,
            aggregate_fraction=square_aggregate,
        )
        plans.append(ExposurePlan(i, square, hole, shot, stage_move, shift, target, params))
    return plans


def _parameters(
    rng: np.random.Generator,
    settings: SessionSettings,
    base: ExposureParameters,
    *,
    ice: float,
    defocus_angstrom: float,
    astigmatism_angstrom: float,
    astigmatism_angle_deg: float,
    drift_px: float,
    beam_tilt_mrad: tuple[float, float],
    n_particles: int,
    broken_fraction: float,
    aggregate_fraction: float,
) -> ExposureParameters:
    """One exposure's parameters from its drawn factors; draws its dose, drift direction and
    seed (in that order)."""
    return dataclasses.replace(
        base,
        size_px=settings.size_px,
        n_frames=settings.n_frames,
        dose_e_per_a2=settings.dose_e_per_a2
        * max(0.1, 1.0 + rng.normal(0, settings.dose_jitter_fraction)),
        defocus_u_angstrom=defocus_angstrom + astigmatism_angstrom / 2,
        defocus_v_angstrom=defocus_angstrom - astigmatism_angstrom / 2,
        defocus_angle_deg=astigmatism_angle_deg,
        phase_shift_deg=settings.phase_shift_deg,
        ice_thickness_nm=ice,
        beam_tilt_x_mrad=beam_tilt_mrad[0],
        beam_tilt_y_mrad=beam_tilt_mrad[1],
        bfactor_angstrom2=settings.bfactor_base_angstrom2
        + settings.bfactor_per_drift_px * drift_px
        + settings.bfactor_per_ice_nm * ice,
        drift_total_px=drift_px,
        drift_direction_deg=float(rng.uniform(0, 360)),
        drift_decay_frames=settings.drift_decay_frames,
        drift_jitter_px=settings.drift_jitter_px,
        local_motion_px=settings.local_motion_px,
        n_particles=n_particles,
        broken_fraction=broken_fraction,
        aggregate_fraction=aggregate_fraction,
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def _beta_around(rng: np.random.Generator, mean: float, concentration: float = 40.0) -> float:
    if mean <= 0 or mean >= 1:
        return float(mean)
    return float(rng.beta(mean * concentration, (1 - mean) * concentration))


def _effect(settings: SessionSettings | None, name: str) -> float | None:
    return None if settings is None else float(getattr(settings, name))


#: the nodes of :func:`causal_graph` by kind
_NODES: dict[str, list[str]] = {
    "acquisition": [
        "grid_square",
        "foil_hole",
        "stage_move",
        "beam_shift",
        "exposure_index",
        "defocus_target",
    ],
    "factor": [
        "ice_thickness",
        "dose",
        "detector",
        "drift",
        "beam_damage",
        "defocus",
        "astigmatism",
        "beam_tilt",
        "heterogeneity",
        "particle_density",
    ],
    "effect": [
        "inelastic_amplitude_loss",
        "solvent_noise",
        "shot_noise",
        "envelope_bfactor",
        "ctf_aberration_loss",
        "signal_in_averages",
    ],
    "outcome": ["ctf_fit_resolution", "particle_resolution"],
}

#: the edges of :func:`causal_graph`: parent, child, mechanism, and the setting that holds the
#: effect size where a structural equation has one
_EDGES: list[tuple[str, str, str, str | None]] = [
    ("grid_square", "ice_thickness", "log-normal ice per square", "ice_square_log_sd"),
    ("foil_hole", "ice_thickness", "log-normal ice per hole", "ice_hole_log_sd"),
    ("grid_square", "heterogeneity", "broken/aggregate fraction per square", None),
    ("stage_move", "drift", "extra drift after a stage move, px", "drift_after_stage_move_px"),
    (
        "beam_shift",
        "beam_tilt",
        "beam tilt per um of image shift, mrad/um",
        "beam_tilt_per_shift_mrad_per_um",
    ),
    (
        "exposure_index",
        "astigmatism",
        "astigmatism creep per exposure, A",
        "astigmatism_creep_angstrom",
    ),
    ("defocus_target", "defocus", "autofocus scatter, um", "defocus_error_um"),
    ("ice_thickness", "particle_density", "thin ice excludes particles", None),
    ("ice_thickness", "inelastic_amplitude_loss", "exp(-t / 350 nm) at 300 kV", None),
    ("ice_thickness", "solvent_noise", "water phase noise ~ t", None),
    ("ice_thickness", "envelope_bfactor", "charging B per nm of ice, A^2/nm", "bfactor_per_ice_nm"),
    ("dose", "shot_noise", "Poisson counting", None),
    ("detector", "shot_noise", "MTF and DQE", None),
    ("dose", "beam_damage", "Grant & Grigorieff critical exposure", None),
    (
        "drift",
        "envelope_bfactor",
        "intra-frame blur and B per px of drift, A^2/px",
        "bfactor_per_drift_px",
    ),
    ("beam_damage", "envelope_bfactor", "high-frequency fading", None),
    ("defocus", "ctf_aberration_loss", "CTF zeros and envelopes", None),
    ("astigmatism", "ctf_aberration_loss", "elliptical rings", None),
    ("beam_tilt", "ctf_aberration_loss", "coma (antisymmetric phase)", None),
    ("heterogeneity", "signal_in_averages", "fewer particles in the right class", None),
    ("particle_density", "signal_in_averages", "particles per exposure", None),
    ("inelastic_amplitude_loss", "ctf_fit_resolution", "less elastic signal", None),
    ("solvent_noise", "ctf_fit_resolution", "background", None),
    ("shot_noise", "ctf_fit_resolution", "noise", None),
    ("envelope_bfactor", "ctf_fit_resolution", "envelope", None),
    ("ctf_aberration_loss", "ctf_fit_resolution", "fit quality", None),
    ("inelastic_amplitude_loss", "particle_resolution", "less elastic signal", None),
    ("solvent_noise", "particle_resolution", "background", None),
    ("shot_noise", "particle_resolution", "noise", None),
    ("envelope_bfactor", "particle_resolution", "envelope", None),
    ("ctf_aberration_loss", "particle_resolution", "uncorrected aberrations", None),
    ("signal_in_averages", "particle_resolution", "signal", None),
]


def causal_graph(settings: SessionSettings | None = None) -> nx.DiGraph:
    """The generating DAG: factors -> physical effects -> outcomes, with effect sizes.

    Node attribute ``kind`` is ``acquisition``, ``factor``, ``effect`` or ``outcome``; edge
    attribute ``mechanism`` says how the parent acts, and ``effect`` holds the configured size
    where a structural equation has one.
    """
    g = nx.DiGraph()
    for kind, nodes in _NODES.items():
        g.add_nodes_from(nodes, kind=kind)
    for parent, child, mechanism, setting in _EDGES:
        effect = None if setting is None else _effect(settings, setting)
        g.add_edge(parent, child, mechanism=mechanism, effect=effect)
    return g


def factor_summary(plans: Sequence[ExposurePlan]) -> dict[str, float]:
    """Means of the main factors over a session (for printing what was made)."""
    p = [plan.parameters for plan in plans]
    if not p:
        return {}
    return {
        "ice_thickness_nm": float(np.mean([x.ice_thickness_nm for x in p])),
        "defocus_um": float(
            np.mean([(x.defocus_u_angstrom + x.defocus_v_angstrom) / 2e4 for x in p])
        ),
        "drift_total_px": float(np.mean([x.drift_total_px for x in p])),
        "n_particles": float(np.mean([x.n_particles for x in p])),
        "dose_e_per_a2": float(np.mean([x.dose_e_per_a2 for x in p])),
    }
