"""The simulator against what its physics must satisfy: Thon-ring zeros at the truth
defocus, counts that match the dose, Poisson statistics, and motion that the truth undoes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from causalscope.models.simulate import (
    ExposureParameters,
    draw_detector,
    inelastic_mean_free_path_nm,
    local_displacement_px,
    phantom_specimen,
    simulate_exposure,
)
from causalscope.models.units import electron_wavelength_angstrom

STILL = {"drift_total_px": 0.0, "drift_jitter_px": 0.0, "local_motion_px": 0.0}


@pytest.fixture(scope="module")
def specimen():  # type: ignore[no-untyped-def]
    return phantom_specimen()


def _radial_profile(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotational average of the periodogram, at 1/n spacing (frequency in cycles/px)."""
    n = image.shape[0]
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    ky, kx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    ring = np.rint(np.sqrt(kx**2 + ky**2) * n).astype(int).ravel()
    profile = np.bincount(ring, power.ravel()) / np.maximum(np.bincount(ring), 1)
    return np.arange(profile.size) / n, profile


def _fit_zero(k: np.ndarray, profile: np.ndarray, k_zero: float, slope: float) -> float:
    """Where a local ``a + b sin^2(slope (k - k0))`` fits the profile best, near ``k_zero``.

    ``slope`` is d(chi)/dk at the zero, so the window holds one ring period around it.
    """
    spacing = math.pi / slope
    window = np.abs(k - k_zero) < 0.45 * spacing
    kk, pp = k[window], profile[window]
    best = (math.inf, k_zero)
    for k0 in np.linspace(k_zero - 0.3 * spacing, k_zero + 0.3 * spacing, 601):
        basis = np.stack([np.ones_like(kk), np.sin(slope * (kk - k0)) ** 2], axis=1)
        coef = np.linalg.lstsq(basis, pp, rcond=None)[0]
        residual = float(((basis @ coef - pp) ** 2).sum())
        if coef[1] > 0 and residual < best[0]:
            best = (residual, float(k0))
    return best[1]


def test_thon_ring_zeros_sit_at_the_truth_defocus(specimen) -> None:  # type: ignore[no-untyped-def]
    defocus, size = 16_000.0, 2048
    params = ExposureParameters(
        size_px=size,
        n_frames=8,
        dose_e_per_a2=100.0,
        defocus_u_angstrom=defocus,
        defocus_v_angstrom=defocus,
        ice_thickness_nm=30.0,
        n_particles=120,
        seed=5,
        **STILL,
    )
    exposure = simulate_exposure(params, specimen=specimen)
    lam = electron_wavelength_angstrom(params.voltage_kv)
    cs = params.spherical_aberration_mm * 1e7
    fine = np.linspace(0.02, 0.3, 300_001)
    chi = math.pi * lam * defocus * fine**2 - 0.5 * math.pi * cs * lam**3 * fine**4
    chi += math.asin(params.amplitude_contrast)
    for image, orders, tolerance in (
        (exposure.frames.sum(axis=0).astype(np.float64), range(4, 13), 0.01),
        (exposure.static_counts.astype(np.float64), range(4, 13), 0.003),  # noise-free
    ):
        k, profile = _radial_profile(image)
        k = k / params.pixel_size_angstrom
        errors = []
        for order in orders:
            k_zero = float(fine[np.argmin(np.abs(chi - order * math.pi))])
            slope = 2 * math.pi * lam * defocus * k_zero - 2 * math.pi * cs * lam**3 * k_zero**3
            errors.append(abs(_fit_zero(k, profile, k_zero, slope) - k_zero) / k_zero)
        assert max(errors) < tolerance, errors


@pytest.mark.parametrize("energy_filter", [False, True])
def test_mean_counts_match_dose_times_pixel_area(specimen, energy_filter: bool) -> None:  # type: ignore[no-untyped-def]
    params = ExposureParameters(
        size_px=512,
        n_frames=10,
        pixel_size_angstrom=1.2,
        dose_e_per_a2=40.0,
        ice_thickness_nm=50.0,
        n_particles=6,
        energy_filter=energy_filter,
        seed=2,
    )
    exposure = simulate_exposure(params, specimen=specimen)
    mean_total = exposure.frames.sum(axis=0, dtype=np.float64).mean()
    expected = 40.0 * 1.2**2
    if energy_filter:  # inelastic electrons are removed by the slit
        expected *= math.exp(-50.0 / inelastic_mean_free_path_nm(300.0))
    assert mean_total == pytest.approx(expected, rel=0.02)


def test_counts_are_poisson(specimen) -> None:  # type: ignore[no-untyped-def]
    params = ExposureParameters(size_px=512, n_frames=6, dose_e_per_a2=30.0, n_particles=8, seed=3)
    exposure = simulate_exposure(params, specimen=specimen, keep_expected=True)
    assert exposure.expected_frames is not None
    residual = exposure.frames.astype(np.float64) - exposure.expected_frames
    ratio = residual.var() / exposure.expected_frames.mean()
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert np.issubdtype(exposure.frames.dtype, np.integer)


def _fourier_shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.fftfreq(image.shape[1])[None, :]
    return np.real(np.fft.ifft2(np.fft.fft2(image) * np.exp(-2j * np.pi * (kx * dx + ky * dy))))


def test_frames_with_truth_shifts_undone_sum_to_the_static_image(specimen) -> None:  # type: ignore[no-untyped-def]
    params = ExposureParameters(
        size_px=256,
        n_frames=8,
        dose_e_per_a2=40.0,
        n_particles=4,
        drift_total_px=12.0,
        drift_jitter_px=0.5,
        local_motion_px=0.0,
        intra_frame_blur=False,
        seed=4,
    )
    exposure = simulate_exposure(params, specimen=specimen, keep_expected=True)
    assert exposure.expected_frames is not None
    shifts = np.asarray(exposure.truth["shifts_px"])
    assert np.allclose(shifts[0], 0.0)
    assert np.linalg.norm(shifts[-1]) > 8.0
    aligned = sum(
        _fourier_shift(frame.astype(np.float64), -dx, -dy)
        for frame, (dx, dy) in zip(exposure.expected_frames, shifts, strict=True)
    )
    inner = slice(24, -24)  # periodic wrap of the undo touches the edges only
    static = exposure.static_counts.astype(np.float64)
    error = np.abs(aligned[inner, inner] - static[inner, inner]).max()
    contrast = static[inner, inner].std()
    assert error < 0.01 * contrast
    # without undoing the shifts the sum is far off
    unaligned = exposure.expected_frames.sum(axis=0)
    assert np.abs(unaligned[inner, inner] - static[inner, inner]).max() > 0.3 * contrast


def test_motion_truth_is_fastest_early_and_local_motion_has_its_amplitude(specimen) -> None:  # type: ignore[no-untyped-def]
    params = ExposureParameters(
        size_px=128,
        n_frames=20,
        n_particles=0,
        drift_total_px=20.0,
        drift_jitter_px=0.0,
        local_motion_px=2.0,
        seed=6,
    )
    exposure = simulate_exposure(params, specimen=specimen)
    steps = np.linalg.norm(np.diff(np.asarray(exposure.truth["shifts_px"]), axis=0), axis=1)
    assert steps[0] > 3 * steps[-1]
    coefficients = np.asarray(exposure.truth["local_motion_coefficients_px"])
    profile = np.asarray(exposure.truth["local_motion_profile"])
    corners = local_displacement_px(
        coefficients,
        profile,
        x_px=np.array([0, 0, 128, 128]),
        y_px=np.array([0, 128, 0, 128]),
        size_px=128,
        frame=19,
    )
    assert np.linalg.norm(corners, axis=-1).max() == pytest.approx(2.0, rel=1e-6)
    first = local_displacement_px(coefficients, profile, x_px=0, y_px=0, size_px=128, frame=0)
    assert np.allclose(first, 0.0)


def test_particles_do_not_overlap_and_are_where_the_truth_says(specimen) -> None:  # type: ignore[no-untyped-def]
    params = ExposureParameters(size_px=512, n_frames=2, n_particles=12, seed=7, **STILL)
    exposure = simulate_exposure(params, specimen=specimen)
    centres = np.asarray(exposure.truth["particles"])
    assert len(centres) == exposure.truth["n_particles_placed"] > 5
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    diameter = 2 * specimen.radius_angstrom / params.pixel_size_angstrom
    assert distances[np.triu_indices(len(centres), 1)].min() >= diameter
    # the clean phase image is bright at every particle centre and dark far from all of them
    clean = exposure.clean_phase
    at_particles = [clean[int(y), int(x)] for x, y in centres]
    yy, xx = np.mgrid[0:512, 0:512]
    far = np.min(np.hypot(xx[..., None] - centres[:, 0], yy[..., None] - centres[:, 1]), -1)
    assert np.min(at_particles) > 5 * np.abs(clean[far > diameter]).mean()


def test_defects_and_gain_reach_the_counts(specimen) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    detector = draw_detector(rng, (256, 256), n_dead_columns=2, n_hot_pixels=5, hot_pixel_rate=5.0)
    params = ExposureParameters(size_px=256, n_frames=10, n_particles=0, seed=8, **STILL)
    exposure = simulate_exposure(params, specimen=specimen, detector=detector)
    total = exposure.frames.sum(axis=0)
    for column in detector.dead_columns:
        assert total[:, column].max() == 0
    for x, y in detector.hot_pixels:
        assert total[y, x] > total.mean() + 40  # 10 frames x 5 extra counts
    # the gain reference undoes the sensitivity: gain-corrected flat field is flat
    corrected = total * detector.gain_reference
    good = ~detector.defect_mask
    assert corrected[good].std() / corrected[good].mean() < 1.15 / math.sqrt(total.mean())


def test_same_seed_same_movie_different_seed_different(specimen) -> None:  # type: ignore[no-untyped-def]
    params = ExposureParameters(size_px=128, n_frames=3, n_particles=2, seed=11)
    a = simulate_exposure(params, specimen=specimen)
    b = simulate_exposure(params, specimen=specimen)
    c = simulate_exposure(dataclasses.replace(params, seed=12), specimen=specimen)
    assert np.array_equal(a.frames, b.frames) and a.truth == b.truth
    assert not np.array_equal(a.frames, c.frames)


def test_rejects_out_of_range_parameters() -> None:
    with pytest.raises(ValueError, match="voltage_kv"):
        ExposureParameters(voltage_kv=300_000)
    with pytest.raises(ValueError, match="amplitude_contrast"):
        ExposureParameters(amplitude_contrast=1.5)


def test_torch_threads_unchanged() -> None:
    # the simulator must not change global torch state behind the caller's back
    assert torch.get_num_threads() >= 1
