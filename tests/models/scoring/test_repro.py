"""Delta-Repro: identical halves score 1, halves one defocus scale apart about 0.6, halves that
lose the fit the whole exposure had score low, and the score follows how far the halves are
apart, not how far apart their own sigmas say they may be."""

from __future__ import annotations

import math

import numpy as np
import pytest

from causalscope.models.scoring.repro import (
    HalfEstimate,
    defocus_scale_angstrom,
    delta_repro,
    shift_scale_angstrom,
    trajectory_difference_px,
)
from causalscope.models.units import electron_wavelength_angstrom

STEP = 1.0 / (512 * 1.0)
SCALE = 100.0


def test_the_defocus_scale_is_a_45_degree_phase_error() -> None:
    wavelength = electron_wavelength_angstrom(300.0)
    scale = defocus_scale_angstrom(resolution_angstrom=3.0, wavelength_angstrom=wavelength)
    assert scale == pytest.approx(114.3, abs=0.2)
    # the CTF phase pi * lambda * dz * k^2 at k = 1/3 A: a quarter of pi
    assert math.pi * wavelength * scale / 9.0 == pytest.approx(math.pi / 4)
    with pytest.raises(ValueError, match="resolution_angstrom"):
        defocus_scale_angstrom(resolution_angstrom=0.0, wavelength_angstrom=wavelength)


def test_identical_halves_reproduce_perfectly() -> None:
    half = HalfEstimate(15_000.0, 20.0, 4.0, 40)
    result = delta_repro(half, half, frequency_step_per_angstrom=STEP, defocus_scale_angstrom=SCALE)
    assert result is not None
    assert result.z_defocus == 0.0 and result.z_fit_resolution == 0.0
    assert result.z_particles == 0.0 and result.delta_repro == 1.0


def test_halves_two_scales_apart_imply_one_scale_of_error() -> None:
    even = HalfEstimate(15_000.0, 20.0, None, None)
    odd = HalfEstimate(15_000.0 + 2 * SCALE, 20.0, None, None)
    result = delta_repro(
        even,
        odd,
        frequency_step_per_angstrom=STEP,
        defocus_scale_angstrom=SCALE,
        whole_supported=False,
    )
    assert result is not None and result.z_defocus == pytest.approx(1.0)
    assert result.z_fit_resolution is None and result.z_particles is None
    assert result.delta_repro == pytest.approx(math.exp(-0.5))
    # particle counts: Poisson, 49 against 30 is sqrt(80) apart: z ~ 2.1
    counts = delta_repro(
        HalfEstimate(None, None, None, 49),
        HalfEstimate(None, None, None, 30),
        frequency_step_per_angstrom=STEP,
        defocus_scale_angstrom=SCALE,
        whole_supported=False,
    )
    assert counts is not None and counts.z_particles == pytest.approx(19 / math.sqrt(80))


def test_the_claimed_sigmas_do_not_excuse_a_large_difference() -> None:
    """Halves 300 A apart are as unstable whatever sigmas their fits claim; the exposure whose
    halves are 30 A apart scores higher even when its fits claim small sigmas."""
    far = [
        delta_repro(
            HalfEstimate(15_000.0, sigma, None, None),
            HalfEstimate(15_300.0, sigma, None, None),
            frequency_step_per_angstrom=STEP,
            defocus_scale_angstrom=SCALE,
            whole_supported=False,
        )
        for sigma in (10.0, 200.0)
    ]
    near = delta_repro(
        HalfEstimate(15_000.0, 5.0, None, None),
        HalfEstimate(15_030.0, 5.0, None, None),
        frequency_step_per_angstrom=STEP,
        defocus_scale_angstrom=SCALE,
        whole_supported=False,
    )
    assert far[0] is not None and far[1] is not None and near is not None
    assert far[0].delta_repro == far[1].delta_repro == pytest.approx(math.exp(-0.75))
    assert near.delta_repro == pytest.approx(math.exp(-0.075)) and near.delta_repro > 0.9


def test_the_defocus_difference_is_taken_where_the_halves_differ_most() -> None:
    """The halves' defocus in their worst direction: the same astigmatism named the other way
    round (U and V swapped, the angle turned 90 degrees) is no difference; the same mean with
    the astigmatism turned 90 degrees differs by the whole astigmatism along U."""
    scale = SCALE

    def z(even: tuple[float, float, float], odd: tuple[float, float, float]) -> float:
        halves = [
            HalfEstimate(0.5 * (u + v), 10.0, None, None, u - v, angle)
            for u, v, angle in (even, odd)
        ]
        result = delta_repro(
            *halves, frequency_step_per_angstrom=STEP, defocus_scale_angstrom=scale
        )
        assert result is not None and result.z_defocus is not None
        return result.z_defocus

    assert z((15_200.0, 14_800.0, 30.0), (14_800.0, 15_200.0, 120.0)) == pytest.approx(0.0)
    # turned 90 degrees: along the even half's U the odd half reads V, 400 A less
    assert z((15_200.0, 14_800.0, 30.0), (15_200.0, 14_800.0, 120.0)) * 2 * scale == (
        pytest.approx(400.0)
    )
    # the mean's difference and the astigmatism's add up in the worst direction
    assert z((15_300.0, 14_900.0, 0.0), (15_200.0, 14_900.0, 0.0)) * 2 * scale == (
        pytest.approx(50.0 + 50.0)
    )
    # no astigmatism given: the means alone, as before
    only_means = delta_repro(
        HalfEstimate(15_000.0, 10.0, None, None, 400.0, 0.0),
        HalfEstimate(15_100.0, 10.0, None, None),
        frequency_step_per_angstrom=STEP,
        defocus_scale_angstrom=scale,
    )
    assert only_means is not None and only_means.z_defocus == pytest.approx(100.0 / (2 * scale))


def test_a_half_without_the_fit_the_whole_had_does_not_reproduce() -> None:
    even = HalfEstimate(15_000.0, 20.0, 4.0, 40)
    odd = HalfEstimate(None, None, None, 41)
    result = delta_repro(
        even, odd, frequency_step_per_angstrom=STEP, defocus_scale_angstrom=SCALE, missing_z=4.0
    )
    assert result is not None
    assert result.z_defocus == 4.0 and result.z_fit_resolution is None  # compared where both
    assert result.delta_repro < 0.35
    assert (
        delta_repro(
            HalfEstimate(None, None, None, None),
            HalfEstimate(None, None, None, None),
            frequency_step_per_angstrom=STEP,
            defocus_scale_angstrom=SCALE,
            whole_supported=False,
        )
        is None
    )
    with pytest.raises(ValueError, match="frequency_step"):
        delta_repro(even, odd, frequency_step_per_angstrom=0.0, defocus_scale_angstrom=SCALE)
    with pytest.raises(ValueError, match="defocus_scale"):
        delta_repro(even, odd, frequency_step_per_angstrom=STEP, defocus_scale_angstrom=0.0)


def test_fit_resolution_differences_are_relative_to_the_frequency() -> None:
    # 4 A against 5 A: frequencies 0.25 and 0.2; sigma 0.25 * 0.225 per half
    result = delta_repro(
        HalfEstimate(None, None, 4.0, None),
        HalfEstimate(None, None, 5.0, None),
        frequency_step_per_angstrom=STEP,
        defocus_scale_angstrom=SCALE,
    )
    assert result is not None and result.z_defocus == 4.0  # no defocus in either half
    assert result.z_fit_resolution == pytest.approx(0.05 / (math.sqrt(2) * 0.25 * 0.225))


def test_two_measurements_of_one_trajectory_differ_by_their_noise_only() -> None:
    """The odd frames' trajectory, interpolated to the even frames' times and offset by the
    halves' own reference frames, matches the even one; noise of known size gives that RMS."""
    times = np.arange(20, dtype=np.float64)
    truth = np.stack([3.0 * np.sqrt(times + 1.0), 0.5 * times], axis=1)  # fast, then slow
    even = truth[0::2] - truth[0]
    odd = truth[1::2] - truth[1]  # relative to its own first frame
    assert trajectory_difference_px(even, odd) < 0.05  # only the interpolation's error
    rng = np.random.default_rng(0)
    sigma = 0.3
    noisy = [
        trajectory_difference_px(
            even + rng.normal(0, sigma, even.shape), odd + rng.normal(0, sigma, odd.shape)
        )
        for _ in range(200)
    ]
    # 9 even frames (2..18) are compared with the mean of their odd neighbours (1..19): each
    # difference has variance 1.5 sigma^2 per axis, their sum 17.5 sigma^2 (the shared odd
    # frames), so after the mean is removed 9 * 1.5 - 17.5 / 9 sigma^2 remain over 9 frames
    expected = sigma * math.sqrt(2 * (9 * 1.5 - 17.5 / 9) / 9)
    assert np.sqrt(np.mean(np.square(noisy))) == pytest.approx(expected, rel=0.05)
    with pytest.raises(ValueError, match="too few frames"):
        trajectory_difference_px(even[:1], odd[:1])


def test_the_drift_difference_counts_on_the_shift_scale() -> None:
    assert shift_scale_angstrom(resolution_angstrom=3.0) == pytest.approx(0.375)
    result = delta_repro(
        HalfEstimate(None, None, None, None),
        HalfEstimate(None, None, None, None),
        frequency_step_per_angstrom=STEP,
        defocus_scale_angstrom=SCALE,
        whole_supported=False,
        drift_difference_angstrom=1.5,
        shift_scale_angstrom=0.375,
    )
    assert result is not None and result.z_drift == pytest.approx(2.0)
    assert result.delta_repro == pytest.approx(math.exp(-1.0))


def test_the_resampled_noise_refit_counts_on_the_whole_exposures_scale() -> None:
    """The refit with as much noise again moves by an error of the whole's own size: a
    difference of one scale is one scale of error (no halving, unlike the halves')."""
    nothing = HalfEstimate(None, None, None, None)
    result = delta_repro(
        nothing,
        nothing,
        frequency_step_per_angstrom=STEP,
        defocus_scale_angstrom=SCALE,
        whole_supported=False,
        noise_difference_angstrom=SCALE,
    )
    assert result is not None and result.z_noise == pytest.approx(1.0)
    assert result.z_defocus is None and result.delta_repro == pytest.approx(math.exp(-0.5))
    # beside the halves' terms it is one more z in the RMS
    both = delta_repro(
        HalfEstimate(15_000.0, 20.0, None, None),
        HalfEstimate(15_000.0 + 6 * SCALE, 20.0, None, None),
        frequency_step_per_angstrom=STEP,
        defocus_scale_angstrom=SCALE,
        noise_difference_angstrom=SCALE,
    )
    assert both is not None and both.z_defocus == pytest.approx(3.0)
    assert both.delta_repro == pytest.approx(math.exp(-math.sqrt((9 + 1) / 2) / 2))
