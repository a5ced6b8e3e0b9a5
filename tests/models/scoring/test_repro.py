"""Delta-Repro: identical halves score 1, halves as far apart as their sigmas about 0.6, and
halves that lose the fit the whole exposure had score low."""

from __future__ import annotations

import math

import pytest

from causalscope.models.scoring.repro import HalfEstimate, delta_repro

STEP = 1.0 / (512 * 1.0)


def test_identical_halves_reproduce_perfectly() -> None:
    half = HalfEstimate(15_000.0, 20.0, 4.0, 40)
    result = delta_repro(half, half, frequency_step_per_angstrom=STEP)
    assert result is not None
    assert result.z_defocus == 0.0 and result.z_fit_resolution == 0.0
    assert result.z_particles == 0.0 and result.delta_repro == 1.0


def test_halves_one_sigma_apart_score_exp_minus_half() -> None:
    sigma = 20.0
    even = HalfEstimate(15_000.0, sigma, None, None)
    odd = HalfEstimate(15_000.0 + math.sqrt(2) * sigma, sigma, None, None)
    result = delta_repro(even, odd, frequency_step_per_angstrom=STEP, whole_supported=False)
    assert result is not None and result.z_defocus == pytest.approx(1.0)
    assert result.z_fit_resolution is None and result.z_particles is None
    assert result.delta_repro == pytest.approx(math.exp(-0.5))
    # particle counts: Poisson, 49 against 30 is sqrt(80) apart: z ~ 2.1
    counts = delta_repro(
        HalfEstimate(None, None, None, 49),
        HalfEstimate(None, None, None, 30),
        frequency_step_per_angstrom=STEP,
        whole_supported=False,
    )
    assert counts is not None and counts.z_particles == pytest.approx(19 / math.sqrt(80))


def test_a_half_without_the_fit_the_whole_had_does_not_reproduce() -> None:
    even = HalfEstimate(15_000.0, 20.0, 4.0, 40)
    odd = HalfEstimate(None, None, None, 41)
    result = delta_repro(even, odd, frequency_step_per_angstrom=STEP, missing_z=4.0)
    assert result is not None
    assert result.z_defocus == 4.0 and result.z_fit_resolution is None  # compared where both
    assert result.delta_repro < 0.35
    assert (
        delta_repro(
            HalfEstimate(None, None, None, None),
            HalfEstimate(None, None, None, None),
            frequency_step_per_angstrom=STEP,
            whole_supported=False,
        )
        is None
    )
    with pytest.raises(ValueError, match="frequency_step"):
        delta_repro(even, odd, frequency_step_per_angstrom=0.0)


def test_fit_resolution_differences_are_relative_to_the_frequency() -> None:
    # 4 A against 5 A: frequencies 0.25 and 0.2; sigma 0.25 * 0.225 per half
    result = delta_repro(
        HalfEstimate(None, None, 4.0, None),
        HalfEstimate(None, None, 5.0, None),
        frequency_step_per_angstrom=STEP,
    )
    assert result is not None and result.z_defocus == 4.0  # no defocus in either half
    assert result.z_fit_resolution == pytest.approx(0.05 / (math.sqrt(2) * 0.25 * 0.225))
