"""Phase flipping, the Wiener filter, the SSNR fit and the FRC, against simulated truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causalscope.models.ctf import ctf_2d
from causalscope.models.restoration import (
    CtfParameters,
    fourier_ring_correlation,
    frc_resolution_angstrom,
    phase_flip,
    spectral_snr_from_fit,
    wiener_filter,
)
from causalscope.models.simulate.exposure import (
    ExposureParameters,
    SimulatedExposure,
    simulate_exposure,
)
from causalscope.models.simulate.specimen import phantom_specimen

APIX = 1.0
CTF = CtfParameters(
    defocus_u_angstrom=15_000.0,
    defocus_v_angstrom=14_600.0,
    defocus_angle_deg=30.0,
    voltage_kv=300.0,
    spherical_aberration_mm=2.7,
    amplitude_contrast=0.07,
)


@pytest.fixture(scope="module")
def exposure() -> SimulatedExposure:
    params = ExposureParameters(
        size_px=512,
        n_frames=1,
        drift_total_px=0.0,
        drift_jitter_px=0.0,
        local_motion_px=0.0,
        intra_frame_blur=False,
        n_particles=12,
        seed=7,
    )
    return simulate_exposure(params, specimen=phantom_specimen())


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


def test_phase_flip_restores_the_sign_of_a_ctf_multiplied_image() -> None:
    rng = torch.Generator().manual_seed(0)
    obj = torch.randn(128, 128, generator=rng)
    ctf = ctf_2d((128, 128), pixel_size_angstrom=APIX, **CTF.kwargs())
    image = torch.fft.irfft2(torch.fft.rfft2(obj) * ctf, s=(128, 128))
    flipped = torch.fft.rfft2(phase_flip(image, pixel_size_angstrom=APIX, **CTF.kwargs()))
    # the flipped spectrum equals |CTF| times the object's: sign corrected, amplitude kept
    expected = torch.fft.rfft2(obj) * ctf.abs()
    expected[0, 0] = torch.fft.rfft2(image)[0, 0]
    # (the Nyquist column is its own conjugate partner, where an astigmatic CTF is ambiguous)
    torch.testing.assert_close(flipped[:, :64], expected[:, :64], atol=2e-3, rtol=1e-4)
    # an involution: flipping twice gives the image back (stigmatic, so that the Nyquist
    # column's two conjugate halves share a sign)
    stigmatic = CTF.kwargs() | {"defocus_v_angstrom": CTF.defocus_u_angstrom}
    twice = phase_flip(
        phase_flip(image, pixel_size_angstrom=APIX, **stigmatic),
        pixel_size_angstrom=APIX,
        **stigmatic,
    )
    torch.testing.assert_close(twice, image, atol=1e-4, rtol=1e-4)


def test_wiener_with_infinite_ssnr_inverts_the_ctf_and_zero_ssnr_keeps_the_mean() -> None:
    rng = torch.Generator().manual_seed(1)
    obj = torch.randn(64, 64, generator=rng)
    ctf = ctf_2d((64, 64), pixel_size_angstrom=APIX, **CTF.kwargs())
    ctf[0, 0] = 1.0
    image = torch.fft.irfft2(torch.fft.rfft2(obj) * ctf, s=(64, 64))
    inverse = wiener_filter(
        image, pixel_size_angstrom=APIX, ssnr=torch.full((8,), math.inf), **CTF.kwargs()
    )
    # 1 / CTF wherever the CTF is well away from zero (and off the ambiguous Nyquist column)
    good = (ctf.abs() > 0.2)[:, :32]
    got, want = torch.fft.rfft2(inverse)[:, :32][good], torch.fft.rfft2(obj)[:, :32][good]
    torch.testing.assert_close(got, want, atol=5e-3 * float(want.abs().max()), rtol=0)
    zero = wiener_filter(image + 5.0, pixel_size_angstrom=APIX, ssnr=torch.zeros(8), **CTF.kwargs())
    torch.testing.assert_close(
        zero, torch.full_like(image, float(image.mean()) + 5.0), atol=1e-4, rtol=0
    )


def test_batched_calls_equal_a_loop() -> None:
    images = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(2))
    defocus = torch.tensor([9_000.0, 15_000.0, 22_000.0])
    batched = phase_flip(
        images,
        pixel_size_angstrom=APIX,
        defocus_u_angstrom=defocus,
        defocus_v_angstrom=defocus - 300,
        defocus_angle_deg=CTF.defocus_angle_deg,
        voltage_kv=CTF.voltage_kv,
        spherical_aberration_mm=CTF.spherical_aberration_mm,
        amplitude_contrast=CTF.amplitude_contrast,
    )
    for i in range(3):
        one = CTF.kwargs() | {
            "defocus_u_angstrom": float(defocus[i]),
            "defocus_v_angstrom": float(defocus[i]) - 300,
        }
        torch.testing.assert_close(
            batched[i], phase_flip(images[i], pixel_size_angstrom=APIX, **one)
        )
    ssnr = torch.linspace(10, 0.1, 20)
    batched_w = wiener_filter(images, pixel_size_angstrom=APIX, ssnr=ssnr, **CTF.kwargs())
    torch.testing.assert_close(
        batched_w[1], wiener_filter(images[1], pixel_size_angstrom=APIX, ssnr=ssnr, **CTF.kwargs())
    )


def test_wiener_with_perfect_ssnr_beats_phase_flipping(exposure: SimulatedExposure) -> None:
    counts = torch.from_numpy(exposure.frames[0].astype(np.float32))
    clean = torch.from_numpy(exposure.clean_phase)
    contrast = counts.mean() - counts  # particles white, like the clean phase
    # the perfect SSNR: the clean phase's radial power times the contrast gain, over Poisson noise
    gain = 2.0 * exposure.truth["p_elastic"] * float(counts.mean())
    power = torch.fft.rfft2(clean).abs().square() / clean.numel()
    k = torch.sqrt(torch.fft.fftfreq(512)[:, None] ** 2 + torch.fft.rfftfreq(512)[None, :] ** 2)
    rings = torch.round(k * 512).long().flatten()
    radial = torch.zeros(int(rings.max()) + 1).index_add_(0, rings, power.flatten())
    radial /= torch.bincount(rings).clamp(min=1)
    ssnr = gain**2 * radial[:257] / float(counts.mean())
    flipped = phase_flip(contrast, pixel_size_angstrom=APIX, **CTF.kwargs())
    wiener = wiener_filter(contrast, pixel_size_angstrom=APIX, ssnr=ssnr, **CTF.kwargs())
    cc_flip, cc_wiener = _correlation(flipped, clean), _correlation(wiener, clean)
    assert cc_wiener > cc_flip + 0.3, (cc_flip, cc_wiener)
    frc_flip = fourier_ring_correlation(flipped, clean)
    frc_wiener = fourier_ring_correlation(wiener, clean)
    # a radial filter scales whole rings, so the FRC may only move a little, never collapse
    res_flip = frc_resolution_angstrom(frc_flip, pixel_size_angstrom=APIX)
    res_wiener = frc_resolution_angstrom(frc_wiener, pixel_size_angstrom=APIX)
    assert res_wiener <= res_flip * 1.02, (res_flip, res_wiener)
    assert float(frc_wiener[1:40].mean()) >= float(frc_flip[1:40].mean()) - 0.01


def test_fitted_ssnr_restores_most_of_the_perfect_gain(exposure: SimulatedExposure) -> None:
    counts = torch.from_numpy(exposure.frames[0].astype(np.float32))
    clean = torch.from_numpy(exposure.clean_phase)
    contrast = counts.mean() - counts
    ssnr = spectral_snr_from_fit(contrast, pixel_size_angstrom=APIX, **CTF.kwargs())
    assert ssnr.signal_s0 > 0 and ssnr.noise_n0 > 0
    # Poisson noise: the white floor is the mean count, within the fit's freedom
    assert ssnr.noise_n0 == pytest.approx(float(counts.mean()), rel=0.25)
    wiener = wiener_filter(contrast, pixel_size_angstrom=APIX, ssnr=ssnr, **CTF.kwargs())
    flipped = phase_flip(contrast, pixel_size_angstrom=APIX, **CTF.kwargs())
    assert _correlation(wiener, clean) > 2.0 * _correlation(flipped, clean)


def test_ssnr_with_a_pinned_noise_and_prior_bfactor() -> None:
    image = torch.randn(128, 128, generator=torch.Generator().manual_seed(3)) * 3.0
    fit = spectral_snr_from_fit(
        image, pixel_size_angstrom=APIX, noise_variance=9.0, bfactor_angstrom2=100.0, **CTF.kwargs()
    )
    assert fit.noise_n0 == 9.0 and fit.bfactor_angstrom2 == 100.0
    # pure noise: whatever signal is found is small against the noise
    assert float(fit(torch.tensor([0.1]))) < 0.2


def test_frc_of_an_image_with_itself_is_one_and_resolution_is_nyquist() -> None:
    image = torch.randn(64, 64, generator=torch.Generator().manual_seed(4))
    frc = fourier_ring_correlation(image, image)
    torch.testing.assert_close(frc, torch.ones_like(frc), atol=1e-5, rtol=0)
    assert frc_resolution_angstrom(frc, pixel_size_angstrom=1.5) == pytest.approx(3.0)


def test_frc_resolution_takes_the_last_crossing() -> None:
    frc = torch.tensor([1.0, 0.9, 0.3, 0.8, 0.6, 0.4, 0.1, 0.45, 0.0])
    # rings at linspace(0, 0.5, 9): last ring >= 0.5 is ring 4 (0.25/A), crossing at 0.28125
    assert frc_resolution_angstrom(frc, pixel_size_angstrom=1.0) == pytest.approx(1 / 0.28125)
    assert (
        frc_resolution_angstrom(torch.tensor([1.0, 0.1, 0.0]), pixel_size_angstrom=1.0) == math.inf
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: phase_flip(torch.zeros(5), pixel_size_angstrom=1.0, **CTF.kwargs()), "h, w"),
        (
            lambda: phase_flip(
                torch.zeros(8, 8, dtype=torch.long), pixel_size_angstrom=1.0, **CTF.kwargs()
            ),
            "floating",
        ),
        (
            lambda: wiener_filter(
                torch.zeros(8, 8),
                pixel_size_angstrom=1.0,
                ssnr=torch.tensor([-1.0, 1.0]),
                **CTF.kwargs(),
            ),
            ">= 0",
        ),
        (
            lambda: wiener_filter(
                torch.zeros(8, 8), pixel_size_angstrom=1.0, ssnr=torch.ones(1), **CTF.kwargs()
            ),
            "1-D",
        ),
        (
            lambda: spectral_snr_from_fit(
                torch.zeros(8, 8), pixel_size_angstrom=1.0, **CTF.kwargs()
            ),
            "rings",
        ),
    ],
)
def test_bad_inputs_raise(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
