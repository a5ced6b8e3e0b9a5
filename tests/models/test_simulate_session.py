"""The session generator draws factors by the documented causal graph, with its effect sizes."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from causalscope.config.simulation import SimulationSettings
from causalscope.models.simulate import ExposureParameters, causal_graph, draw_session

DIAMETER_A = 120.0


def _session(n: int = 240, seed: int = 3, **changes: object):  # type: ignore[no-untyped-def]
    settings = SimulationSettings(**changes)  # type: ignore[arg-type]
    plans = draw_session(
        settings,
        n_exposures=n,
        base=ExposureParameters(),
        particle_diameter_angstrom=DIAMETER_A,
        seed=seed,
    )
    return settings, plans


def test_graph_is_a_dag_from_acquisition_to_outcomes() -> None:
    settings = SimulationSettings()
    g = causal_graph(settings)
    assert nx.is_directed_acyclic_graph(g)
    outcomes = {n for n, kind in g.nodes(data="kind") if kind == "outcome"}
    assert outcomes == {"ctf_fit_resolution", "particle_resolution"}
    for factor in (
        "ice_thickness",
        "drift",
        "defocus",
        "astigmatism",
        "beam_tilt",
        "heterogeneity",
        "dose",
    ):
        assert any(nx.has_path(g, factor, o) for o in outcomes), factor
    assert g.edges["beam_shift", "beam_tilt"]["effect"] == settings.beam_tilt_per_shift_mrad_per_um


def test_layout_squares_holes_shots() -> None:
    settings, plans = _session(n=60)
    per_square = settings.holes_per_square * settings.exposures_per_hole
    assert [p.grid_square for p in plans] == [i // per_square for i in range(60)]
    assert all(p.stage_move == (p.shot == 0) for p in plans)
    # shots of one hole share its ice; holes of a square scatter around the square's ice
    by_hole: dict[int, set[float]] = {}
    for p in plans:
        by_hole.setdefault(p.foil_hole, set()).add(p.parameters.ice_thickness_nm)
    assert all(len(values) == 1 for values in by_hole.values())


def test_beam_tilt_is_linear_in_beam_shift_with_the_configured_slope() -> None:
    settings, plans = _session(n=40)
    shift = np.array([p.beam_shift_um for p in plans])
    tilt = np.array([[p.parameters.beam_tilt_x_mrad, p.parameters.beam_tilt_y_mrad] for p in plans])
    slope = settings.beam_tilt_per_shift_mrad_per_um
    expected = np.asarray(settings.beam_tilt_offset_mrad) + slope * shift
    assert np.allclose(tilt, expected)


def test_stage_moves_add_the_configured_drift() -> None:
    settings, plans = _session(n=480)
    moved = np.mean([p.parameters.drift_total_px for p in plans if p.stage_move])
    still = np.mean([p.parameters.drift_total_px for p in plans if not p.stage_move])
    # difference of two means of LogNormal(5 px, 0.4) samples, 120 and 360 of them
    assert moved - still == pytest.approx(settings.drift_after_stage_move_px, abs=1.5)


def test_defocus_follows_the_cycled_targets_and_astigmatism_creeps() -> None:
    settings, plans = _session(n=240)
    errors = [
        (p.parameters.defocus_u_angstrom + p.parameters.defocus_v_angstrom) / 2e4
        - p.target_defocus_um
        for p in plans
    ]
    assert np.std(errors) == pytest.approx(settings.defocus_error_um, rel=0.2)
    targets = [p.target_defocus_um for p in plans if p.shot == 0]
    cycle = settings.defocus_targets_um
    assert targets[: len(cycle)] == cycle
    astig = np.array(
        [p.parameters.defocus_u_angstrom - p.parameters.defocus_v_angstrom for p in plans]
    )
    slope = np.polyfit(np.arange(len(astig)), astig, 1)[0]
    assert slope == pytest.approx(settings.astigmatism_creep_angstrom, rel=0.25)


def test_thin_ice_squeezes_particles_out() -> None:
    _, plans = _session(n=480, ice_median_nm=14.0, ice_square_log_sd=0.5)
    thin = [p.parameters.n_particles for p in plans if p.parameters.ice_thickness_nm < 9.6]
    thick = [p.parameters.n_particles for p in plans if p.parameters.ice_thickness_nm > 14.4]
    assert thin and thick
    assert np.mean(thin) == 0
    assert np.mean(thick) > 20


def test_bfactor_structural_equation() -> None:
    settings, plans = _session(n=50)
    for p in plans:
        x = p.parameters
        expected = (
            settings.bfactor_base_angstrom2
            + settings.bfactor_per_drift_px * x.drift_total_px
            + settings.bfactor_per_ice_nm * x.ice_thickness_nm
        )
        assert x.bfactor_angstrom2 == pytest.approx(expected)


def test_deterministic_for_a_seed() -> None:
    _, a = _session(n=20, seed=9)
    _, b = _session(n=20, seed=9)
    _, c = _session(n=20, seed=10)
    assert a == b
    assert a != c
