"""The CTF-weighted average, the FRC-to-SNR rule, the grid's rotation convention and binning,
against reference values and identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from causalscope.models.classification import (
    ParticleCtfs,
    fourier_crop,
    frc_first_crossing_angstrom,
    snr_from_frc,
    wiener_average,
)
from causalscope.models.classification._grids import Grid, rotate_images


def test_wiener_average_reference_value() -> None:
    # two particles of one coefficient: CTF 0.5 and 1.0, data 1 and 2, SSNR 4
    # num = 0.5 * 1 + 1 * 2 = 2.5, den = 0.25 + 1 = 1.25, average = 2.5 / (1.25 + 0.25)
    num = torch.tensor(0.5 * 1.0 + 1.0 * 2.0)
    den = torch.tensor(0.5**2 + 1.0**2)
    assert float(wiener_average(num, den, torch.tensor(4.0))) == pytest.approx(2.5 / 1.5)
    with pytest.raises(ValueError, match="ssnr"):
        wiener_average(num, den, torch.tensor(0.0))


def test_noise_free_particles_average_to_the_object() -> None:
    """X_i = CTF_i O with different CTFs: the average recovers O wherever some CTF is not 0."""
    grid = Grid.of(32, 3.0)
    obj = torch.fft.rfft2(torch.randn(32, 32, generator=torch.Generator().manual_seed(0)))
    ctf = ParticleCtfs(
        np.array([9000.0, 15000.0, 22000.0]), np.array([8800.0, 14000.0, 21500.0]),
        np.array([0.0, 40.0, 100.0]), 300.0, 2.7, 0.07, 3.0,
    )  # fmt: skip
    transfer = ctf.transfer(grid.kx, grid.ky).double()
    particles = transfer * obj  # X_i = CTF_i O
    num = (transfer * particles).sum(0)
    den = (transfer**2).sum(0)
    average = wiener_average(num, den, torch.tensor(1e9))
    strong = den > 0.05
    torch.testing.assert_close(average[strong], obj[strong].to(average.dtype), rtol=1e-4, atol=1e-4)


def test_snr_from_frc_reference_values() -> None:
    # half-set FRC 1/3 -> full-set SNR 2 * (1/3) / (2/3) = 1; FRC 0.5 -> 2; negative -> floor
    frc = torch.tensor([-1.0, 1 / 3, 0.5, -0.2], dtype=torch.float64)
    snr = snr_from_frc(frc)
    assert float(snr[1]) == pytest.approx(1.0)
    # the running minimum: ring 2 (0.5) is clamped to ring 1's 1/3
    assert float(snr[2]) == pytest.approx(1.0)
    assert float(snr[3]) == pytest.approx(1e-3)
    # ring 0 (the arbitrary mean, FRC -1 here) neither blanks the rings after it nor its own
    assert float(snr[0]) == pytest.approx(1.0)


def test_frc_first_crossing() -> None:
    # box 32 (17 rings), 2 A pixels: ring i is at i / 64 1/A; crossing halfway between 4 and 5
    frc = torch.ones(17)
    frc[5:] = 0.0
    frc[4] = 0.286  # 0.143 is reached half-way from ring 4 to 5
    res = frc_first_crossing_angstrom(frc, pixel_size_angstrom=2.0)
    assert res == pytest.approx(64.0 / 4.5)
    frc[10:] = 0.5  # a late rise does not count
    assert frc_first_crossing_angstrom(frc, pixel_size_angstrom=2.0) == pytest.approx(res)
    assert math.isinf(frc_first_crossing_angstrom(torch.zeros(17), pixel_size_angstrom=2.0))


def _blob(box: int, x: float, y: float, sigma: float = 2.0) -> torch.Tensor:
    c = torch.arange(box, dtype=torch.float32) - box // 2
    return torch.exp(-((c[None, :] - x) ** 2 + (c[:, None] - y) ** 2) / (2 * sigma**2))


def test_rotation_is_counter_clockwise_in_x_y() -> None:
    image = _blob(32, 6.0, 0.0)
    out = rotate_images(image[None], torch.tensor([math.pi / 2]))[0]
    torch.testing.assert_close(out, _blob(32, 0.0, 6.0), atol=0.02, rtol=0)


def test_rotated_ctf_matches_the_rotated_image() -> None:
    """The transfer of an image rotated by psi equals the CTF evaluated with the defocus angle
    turned by psi: filter-then-rotate equals rotate-then-filter-with-the-rotated-CTF."""
    box = 64
    grid = Grid.of(box, 4.0)
    image = _blob(box, 3.0, -2.0, sigma=3.0) + 0.5 * _blob(box, -5.0, 4.0, sigma=2.0)
    ctf = ParticleCtfs(np.array([30000.0]), np.array([18000.0]), np.array([25.0]), 300.0, 2.7,
                      0.07, 4.0, phase_flipped=False)  # fmt: skip
    psi = torch.tensor([0.7])
    filtered = torch.fft.irfft2(
        torch.fft.rfft2(image) * ctf.transfer(grid.kx, grid.ky)[0], s=(box, box)
    )
    left = rotate_images(filtered[None], psi)[0]
    rotated = rotate_images(image[None], psi)[0]
    transfer = ctf.transfer(grid.kx, grid.ky, rotation_rad=psi)[0]
    right = torch.fft.irfft2(torch.fft.rfft2(rotated) * transfer, s=(box, box))
    wrong = torch.fft.irfft2(
        torch.fft.rfft2(rotated) * ctf.transfer(grid.kx, grid.ky, rotation_rad=-psi)[0],
        s=(box, box),
    )
    error = float((left - right).norm() / left.norm())
    assert error < 0.05
    assert float((left - wrong).norm() / left.norm()) > 4 * error  # the other sense is wrong


def test_fourier_crop_keeps_low_frequencies_and_the_centre() -> None:
    box, small = 64, 32
    c = torch.arange(box, dtype=torch.float64)
    wave = 1.5 + torch.cos(2 * math.pi * 3 * c / box)[None, :] * torch.ones(box, 1)
    cropped = fourier_crop(wave, small)
    cs = torch.arange(small, dtype=torch.float64)
    expected = 1.5 + torch.cos(2 * math.pi * 3 * cs / small)[None, :] * torch.ones(small, 1)
    torch.testing.assert_close(cropped, expected)
    peak = fourier_crop(_blob(box, 0.0, 0.0, sigma=4.0)[None], small)[0]
    assert divmod(int(peak.argmax()), small) == (small // 2, small // 2)
    with pytest.raises(ValueError, match="size_px"):
        fourier_crop(wave, 31)
