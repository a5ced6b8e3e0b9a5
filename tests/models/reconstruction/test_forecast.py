"""Rosenthal-Henderson: the B-factor and forecasts of a known model, and doubling subsets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from causalscope.models.reconstruction import doubling_subsets, fit_rosenthal_henderson

B, C = 120.0, 4.0


def _resolution(n: float) -> float:
    """The d with ln(n d) = B / (2 d^2) + C, solved independently of the module."""
    return brentq(lambda d: math.log(n * d) - B / (2 * d * d) - C, 0.5, 1e4)


def test_doubling_subsets() -> None:
    assert doubling_subsets(5000, smallest=500) == [500, 1000, 2000, 4000, 5000]
    assert doubling_subsets(300, smallest=500) == [300]


def test_a_known_bfactor_and_its_forecasts_come_back() -> None:
    particles = np.array([500, 1000, 2000, 4000, 8000])
    fit = fit_rosenthal_henderson(particles, [_resolution(n) for n in particles])
    assert fit.bfactor_angstrom2 == pytest.approx(B, rel=1e-9)
    assert fit.bfactor_sd_angstrom2 == pytest.approx(0.0, abs=1e-6)
    assert fit.resolution_at(16000) == pytest.approx(_resolution(16000), rel=1e-6)
    assert fit.particles_for(fit.resolution_at(12345)) == pytest.approx(12345, rel=1e-6)
    needed = fit.particles_for(3.0)
    hours = fit.hours_to(3.0, particles_now=8000, particles_per_hour=1000.0)
    assert hours == pytest.approx((needed - 8000) / 1000)
    assert fit.hours_to(fit.resolution_at(4000), particles_now=8000, particles_per_hour=1.0) == 0.0
    # RELION's plain line through the same points reads a larger B (it ignores 1/d)
    assert fit.plain_bfactor_angstrom2 > B


def test_noisy_points_give_an_uncertainty_that_covers_the_truth() -> None:
    rng = np.random.default_rng(0)
    particles = np.array([500, 1000, 2000, 4000, 8000, 16000])
    resolutions = [_resolution(n) * (1 + rng.normal(0, 0.01)) for n in particles]
    fit = fit_rosenthal_henderson(particles, resolutions)
    assert abs(fit.bfactor_angstrom2 - B) < 3 * fit.bfactor_sd_angstrom2


def test_too_few_points_is_an_error() -> None:
    with pytest.raises(ValueError, match="need >= 2"):
        fit_rosenthal_henderson([500, 1000], [8.0, math.inf])


def test_one_fsc_curve_forecasts_twice_the_particles() -> None:
    from causalscope.models.reconstruction.forecast import fit_ssnr

    apix, shells, bfactor, amplitude = 1.0, 33, 80.0, 2.0
    k = np.arange(shells) / (2 * (shells - 1) * apix)
    k[0] = 1e-3

    def curve(factor: float) -> np.ndarray:
        ssnr = factor * np.exp(amplitude - bfactor / 2 * k**2) / k
        return ssnr / (1 + ssnr)

    fit = fit_ssnr(curve(1.0), pixel_size_angstrom=apix, particles=1000)
    assert fit.bfactor_angstrom2 == pytest.approx(bfactor, rel=1e-6)
    # the resolution where twice the SSNR crosses FSC 0.143, found on a fine grid
    fine = np.linspace(0.01, 0.5, 200_001)
    doubled = 2 * np.exp(amplitude - bfactor / 2 * fine**2) / fine
    expected = 1 / fine[np.argmax(doubled / (1 + doubled) < 0.143)]
    assert fit.resolution_at(2000) == pytest.approx(expected, rel=1e-4)
    # the particles for a resolution invert the resolution from particles
    for n in (1500, 4000, 20_000):
        assert fit.particles_for(fit.resolution_at(n)) == pytest.approx(n, rel=1e-6)
    with pytest.raises(ValueError, match="need >= 2 shells"):
        fit_ssnr(np.array([1.0, 0.01, 0.0, 0.0]), pixel_size_angstrom=apix, particles=10)


def test_the_session_end_forecast_from_one_fsc_and_the_rate() -> None:
    """A known SSNR fall-off measured at 1,000 particles, 500 more an hour and 6 h left: the
    end's 4,000 particles give the resolution where 4x the SSNR crosses FSC 0.143 (found on a
    fine grid); the probability of the target is one half at that resolution, rises for a
    coarser target and falls for a finer one, and narrows as the end draws near."""
    from causalscope.models.reconstruction.forecast import (
        LOG_SD_PER_DOUBLING,
        fit_ssnr,
        session_end,
    )

    apix, shells, bfactor, amplitude = 1.0, 33, 80.0, 2.0
    k = np.arange(shells) / (2 * (shells - 1) * apix)
    k[0] = 1e-3
    ssnr = np.exp(amplitude - bfactor / 2 * k**2) / k
    fit = fit_ssnr(ssnr / (1 + ssnr), pixel_size_angstrom=apix, particles=1000)
    fine = np.linspace(0.01, 0.5, 200_001)
    four = 4 * np.exp(amplitude - bfactor / 2 * fine**2) / fine
    truth = 1 / fine[np.argmax(four / (1 + four) < 0.143)]

    end = session_end(fit, particles_per_hour=500.0, hours_left=6.0, target_angstrom=truth)
    assert end.particles == pytest.approx(4000.0)
    assert end.resolution_angstrom == pytest.approx(truth, rel=1e-4)
    assert end.p_reach_target == pytest.approx(0.5, abs=0.01)
    # a target one spread (two doublings' worth) coarser or finer: 84 % and 16 %
    spread = 2 * LOG_SD_PER_DOUBLING
    coarser = session_end(
        fit, particles_per_hour=500.0, hours_left=6.0, target_angstrom=truth * math.exp(spread)
    )
    finer = session_end(
        fit, particles_per_hour=500.0, hours_left=6.0, target_angstrom=truth * math.exp(-spread)
    )
    assert coarser.p_reach_target == pytest.approx(0.841, abs=0.005)
    assert finer.p_reach_target == pytest.approx(0.159, abs=0.005)
    # no time left: the particles are those of now, and the spread is the floor's
    current = fit.resolution_at(1000)
    for factor, chance in ((1.05, 1.0), (0.95, 0.0)):  # 5 %: five times the floor of 1 %
        now = session_end(
            fit, particles_per_hour=500.0, hours_left=0.0, target_angstrom=factor * current
        )
        assert now.particles == 1000 and now.resolution_angstrom == pytest.approx(current)
        assert now.p_reach_target == pytest.approx(chance, abs=1e-5)
    with pytest.raises(ValueError, match="hours_left >= 0"):
        session_end(fit, particles_per_hour=500.0, hours_left=-1.0, target_angstrom=3.0)
