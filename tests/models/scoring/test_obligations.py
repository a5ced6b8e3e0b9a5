"""Obligations discharged by z3: each injected inconsistency caught with its counterexample,
clean facts pass, and the solver's verdicts agree with the arithmetic they state."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from causalscope.models.reconstruction.symmetry import self_correlations, symmetry_matrices
from causalscope.models.scoring import (
    ExposureFacts,
    ReconstructionFacts,
    closest_pair_px,
    exposure_obligations,
    logic_score,
    reconstruction_obligations,
)

CLEAN = ExposureFacts(
    exposure_id="e1",
    pixel_size_angstrom=1.0,
    fit_resolution_angstrom=3.3,
    ice_thickness_nm=40.0,
    ice_thickness_sigma_nm=5.0,
    particle_diameter_angstrom=120.0,
    n_particles=150,
    area_angstrom2=2048.0**2,
    closest_picks_angstrom=98.0,
    metadata_dose_e_per_a2=40.2,
    used_dose_e_per_a2=40.2,
    measured_dose_e_per_a2=40.0,
    total_drift_angstrom=20.0,
    exposure_time_s=1.6,
)


def _by_name(facts: ExposureFacts) -> dict[str, object]:
    return {r.name: r for r in exposure_obligations(facts)}


def test_clean_exposure_states_every_obligation_and_all_hold() -> None:
    results = exposure_obligations(CLEAN)
    assert {r.name for r in results} == {
        "fit_within_nyquist",
        "particles_fit_in_ice",
        "picks_do_not_overlap",
        "packing_allows_density",
        "dose_matches_metadata",
        "drift_within_stage",
    }
    assert all(r.holds and not r.counterexample for r in results)
    assert logic_score(results) == 1.0


@pytest.mark.parametrize(
    ("name", "change", "shown"),
    [
        ("fit_within_nyquist", {"fit_resolution_angstrom": 1.6}, {"nyquist_angstrom": 2.0}),
        ("particles_fit_in_ice", {"ice_thickness_nm": 5.0, "ice_thickness_sigma_nm": 1.0}, {}),
        ("picks_do_not_overlap", {"closest_picks_angstrom": 30.0}, {}),
        ("packing_allows_density", {"n_particles": 3000, "ice_thickness_nm": 10.0}, {}),
        ("dose_matches_metadata", {"metadata_dose_e_per_a2": 80.0}, {}),
        ("drift_within_stage", {"total_drift_angstrom": 400.0}, {"limit_angstrom": 80.0}),
    ],
)
def test_each_injected_inconsistency_fails_with_its_counterexample(
    name: str, change: dict[str, float], shown: dict[str, float]
) -> None:
    result = _by_name(dataclasses.replace(CLEAN, **change))[name]
    assert not result.holds  # type: ignore[attr-defined]
    counterexample = result.counterexample  # type: ignore[attr-defined]
    for key, value in change.items():
        if key != "ice_thickness_sigma_nm":
            assert counterexample[key] == pytest.approx(value)
    for key, value in shown.items():
        assert counterexample[key] == pytest.approx(value)
    # the other obligations are untouched by the injection
    others = [
        r for r in exposure_obligations(dataclasses.replace(CLEAN, **change)) if r.name != name
    ]
    assert sum(not r.holds for r in others) <= 1  # packing also reads the ice


def test_packing_counterexample_is_the_covered_and_allowed_area() -> None:
    facts = dataclasses.replace(
        CLEAN, n_particles=3000, ice_thickness_nm=10.0, ice_thickness_sigma_nm=0.0
    )
    result = _by_name(facts)["packing_allows_density"]
    covered = 3000 * np.pi * 60.0**2
    allowed = np.pi / (2 * np.sqrt(3)) * 2048.0**2  # one layer: ice thinner than a particle
    assert result.counterexample["covered_angstrom2"] == pytest.approx(covered, rel=1e-9)  # type: ignore[attr-defined]
    assert result.counterexample["allowed_angstrom2"] == pytest.approx(allowed, rel=1e-9)  # type: ignore[attr-defined]
    assert "3000 particles" in result.message  # type: ignore[attr-defined]


def test_solver_verdicts_equal_the_arithmetic_with_uncertainty() -> None:
    """Random facts: ice holds iff 10 (t + 2 sigma) >= d; Nyquist iff fit >= 2 apix."""
    rng = np.random.default_rng(0)
    for _ in range(60):
        t, sigma = rng.uniform(2, 30), rng.uniform(0, 5)
        d, apix, fit = rng.uniform(60, 250), rng.uniform(0.5, 2.0), rng.uniform(1.0, 6.0)
        facts = dataclasses.replace(
            CLEAN,
            ice_thickness_nm=t,
            ice_thickness_sigma_nm=sigma,
            particle_diameter_angstrom=d,
            pixel_size_angstrom=apix,
            fit_resolution_angstrom=fit,
        )
        found = _by_name(facts)
        assert found["particles_fit_in_ice"].holds == (10 * (t + 2 * sigma) >= d)  # type: ignore[attr-defined]
        assert found["fit_within_nyquist"].holds == (fit >= 2 * apix)  # type: ignore[attr-defined]


def test_unmeasured_inputs_state_no_obligation() -> None:
    facts = ExposureFacts(exposure_id="bare", pixel_size_angstrom=1.0)
    assert exposure_obligations(facts) == []
    assert logic_score([]) is None


def test_closest_pair_finds_a_planted_duplicate_pick() -> None:
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2) * 100.0
    points = grid + rng.uniform(-5, 5, grid.shape)
    assert closest_pair_px(points) > 85
    planted = np.vstack([points, points[37] + [3.0, 4.0]])
    assert closest_pair_px(planted) == pytest.approx(5.0)
    assert closest_pair_px(points[:1]) is None


def _blobs(points: list[tuple[float, float, float]], box: int = 40) -> torch.Tensor:
    axis = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    return sum(  # type: ignore[return-value]
        torch.exp(-((x - a) ** 2 + (y - b) ** 2 + (z - c) ** 2) / 18.0) for a, b, c in points
    )


def test_symmetry_obligation_tells_a_symmetric_map_from_one_that_is_not() -> None:
    d2 = [(8, 4, 3), (-8, -4, 3), (8, -4, -3), (-8, 4, -3)]
    symmetric = self_correlations(_blobs(d2), symmetry_matrices("D2"))
    broken = self_correlations(_blobs([*d2, (5, 10, -6), (5, 10, -7)]), symmetry_matrices("D2"))
    assert min(symmetric) > 0.99 and max(broken) < 0.8
    for correlations, holds in ((symmetric, True), (broken, False)):
        facts = ReconstructionFacts(
            version=3,
            pixel_size_angstrom=2.0,
            resolution_angstrom=8.0,
            symmetry="D2",
            symmetry_correlations=correlations,
        )
        found = {r.name: r for r in reconstruction_obligations(facts)}
        assert found["symmetry_consistent"].holds is holds


def test_reconstruction_beyond_nyquist_or_far_beyond_the_classes_fails() -> None:
    facts = ReconstructionFacts(
        version=1,
        pixel_size_angstrom=2.0,
        resolution_angstrom=3.5,
        best_class_resolution_angstrom=12.0,
    )
    found = {r.name: r for r in reconstruction_obligations(facts)}
    assert not found["map_within_nyquist"].holds
    assert found["map_within_nyquist"].counterexample["nyquist_angstrom"] == pytest.approx(4.0)
    assert not found["map_not_beyond_classes"].holds
    fine = dataclasses.replace(facts, resolution_angstrom=7.0)
    assert all(r.holds for r in reconstruction_obligations(fine))
