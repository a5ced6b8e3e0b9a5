"""Rosenthal-Henderson: the B-factor and forecasts of a known line, and doubling subsets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from causalscope.models.reconstruction import doubling_subsets, fit_rosenthal_henderson


def test_doubling_subsets() -> None:
    assert doubling_subsets(5000, smallest=500) == [500, 1000, 2000, 4000, 5000]
    assert doubling_subsets(300, smallest=500) == [300]


def test_a_known_bfactor_and_its_forecasts_come_back() -> None:
    bfactor, intercept = 120.0, -0.05
    particles = np.array([500, 1000, 2000, 4000, 8000])
    resolutions = 1.0 / np.sqrt(2.0 / bfactor * np.log(particles) + intercept)
    fit = fit_rosenthal_henderson(particles, resolutions)
    assert fit.bfactor_angstrom2 == pytest.approx(bfactor, rel=1e-9)
    assert fit.bfactor_sd_angstrom2 == pytest.approx(0.0, abs=1e-6)
    assert fit.resolution_at(16000) == pytest.approx(
        1.0 / math.sqrt(2.0 / bfactor * math.log(16000) + intercept)
    )
    assert fit.particles_for(fit.resolution_at(12345)) == pytest.approx(12345, rel=1e-9)
    needed = fit.particles_for(3.0)
    assert fit.hours_to(3.0, particles_now=8000, particles_per_hour=1000.0) == pytest.approx(
        (needed - 8000) / 1000
    )
    assert fit.hours_to(fit.resolution_at(4000), particles_now=8000, particles_per_hour=1.0) == 0.0


def test_noisy_points_give_an_uncertainty_that_covers_the_truth() -> None:
    rng = np.random.default_rng(0)
    particles = np.array([500, 1000, 2000, 4000, 8000, 16000])
    inverse_d2 = 2.0 / 80.0 * np.log(particles) - 0.1 + rng.normal(0, 0.002, 6)
    fit = fit_rosenthal_henderson(particles, 1.0 / np.sqrt(inverse_d2))
    assert abs(fit.bfactor_angstrom2 - 80.0) < 3 * fit.bfactor_sd_angstrom2


def test_too_few_points_is_an_error() -> None:
    with pytest.raises(ValueError, match="need >= 2"):
        fit_rosenthal_henderson([500, 1000], [8.0, math.inf])
