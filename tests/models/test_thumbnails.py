"""Thumbnails: the stretch, the binning and the power-spectrum picture against known inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causalscope.models.ctf import ctf_2d
from causalscope.models.thumbnails import (
    micrograph_thumbnail,
    picks_thumbnail,
    power_spectrum_thumbnail,
    to_uint8,
)


def test_stretch_maps_percentiles_to_the_ends() -> None:
    ramp = torch.arange(1000, dtype=torch.float32).reshape(10, 100)
    picture = to_uint8(ramp, low_percentile=0, high_percentile=100)
    assert picture.dtype == np.uint8
    assert picture.min() == 0 and picture.max() == 255
    # linear in between: value 499.5 of 0..999 sits at mid-grey
    assert abs(int(picture.flat[500]) - 128) <= 1


def test_stretch_ends_are_the_interpolated_percentiles() -> None:
    """The ends are the percentiles interpolated linearly between order statistics (as
    ``torch.quantile`` gives them): 0.5 % of the pixels at or below 0, 0.5 % at 255."""
    rng = np.random.default_rng(3)
    image = torch.as_tensor(rng.standard_t(3, size=(300, 257)), dtype=torch.float32)
    low, high = torch.quantile(image.flatten(), torch.tensor([0.005, 0.995])).tolist()
    expected = ((image - low) / (high - low) * 255.0).clamp(0, 255).round().to(torch.uint8)
    picture = to_uint8(image)
    assert np.abs(picture.astype(int) - expected.numpy().astype(int)).max() <= 1
    assert 0.004 <= (picture == 0).mean() <= 0.006
    assert 0.004 <= (picture == 255).mean() <= 0.006


def test_stretch_survives_nan_and_constant_images() -> None:
    image = torch.ones(8, 8)
    assert (to_uint8(image) == 128).all()
    image[0, 0] = float("nan")
    picture = to_uint8(image * torch.arange(64.0).reshape(8, 8))
    assert picture[0, 0] == 0


def test_micrograph_thumbnail_is_the_block_mean() -> None:
    rng = np.random.default_rng(0)
    image = torch.as_tensor(rng.normal(size=(64, 96)), dtype=torch.float32)
    picture = micrograph_thumbnail(image, size_px=24)  # factor 4
    assert picture.shape == (16, 24)
    blocks = image.reshape(16, 4, 24, 4).mean(dim=(1, 3))
    reference = to_uint8(blocks)
    assert np.array_equal(picture, reference)


def _ctf(n: int) -> torch.Tensor:
    return ctf_2d(
        (n, n),
        pixel_size_angstrom=1.0,
        defocus_u_angstrom=15_000.0,
        defocus_v_angstrom=14_000.0,
        defocus_angle_deg=30.0,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        rfft=False,
        fftshift=True,
    )


def test_power_spectrum_picture_shows_the_rings_and_the_model() -> None:
    n = 256
    ctf = _ctf(n)
    generator = torch.Generator().manual_seed(1)
    # an average of 20 periodograms: exponential noise around CTF^2 + background
    noise = torch.distributions.Gamma(20.0, 20.0).sample((n, n))
    spectrum = (ctf**2 + 0.3) * noise + 0 * torch.rand(n, n, generator=generator)
    kwargs = {
        "pixel_size_angstrom": 1.0,
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "amplitude_contrast": 0.07,
        "defocus_u_angstrom": 15_000.0,
        "defocus_v_angstrom": 14_000.0,
        "defocus_angle_deg": 30.0,
    }
    picture = power_spectrum_thumbnail(spectrum, size_px=n, **kwargs)
    assert picture.shape == (n, n) and picture.dtype == np.uint8
    model = (ctf**2).numpy()
    wrong = (
        ctf_2d(
            (n, n),
            pixel_size_angstrom=1.0,
            defocus_u_angstrom=9000.0,
            defocus_v_angstrom=9000.0,
            defocus_angle_deg=0.0,
            voltage_kv=300.0,
            spherical_aberration_mm=2.7,
            amplitude_contrast=0.07,
            rfft=False,
            fftshift=True,
        )
        ** 2
    ).numpy()
    # compare where the rings are sampled well (>= 4 px per period): radius 6..50 px
    y, x = np.mgrid[:n, : n // 2] - np.array([n // 2, n // 2])[:, None, None]
    band = (np.hypot(x, y) > 6) & (np.hypot(x, y) < 50)
    left = picture[:, : n // 2].astype(np.float64)[band]
    r = np.corrcoef(left, model[:, : n // 2][band])[0, 1]
    r_wrong = np.corrcoef(left, wrong[:, : n // 2][band])[0, 1]
    # the measured half follows the true rings, not those of another defocus
    assert r > 0.5 > abs(r_wrong) + 0.2
    # the right half is the model itself
    expected = np.round(np.clip(model[:, n // 2 :] * 255, 0, 255))
    assert np.abs(picture[:, n // 2 :].astype(float) - expected).max() <= 1


def test_power_spectrum_without_a_fit_is_all_measured() -> None:
    spectrum = torch.rand(64, 64) + 1
    picture = power_spectrum_thumbnail(spectrum, pixel_size_angstrom=1.0)
    assert picture.shape == (64, 64)
    with pytest.raises(ValueError, match="square"):
        power_spectrum_thumbnail(torch.ones(64, 32), pixel_size_angstrom=1.0)


def test_picks_picture_circles_each_pick_and_tints_only_the_excluded_area() -> None:
    """A 1024^2 flat micrograph binned by 2: the excluded left quarter is tinted orange (and
    nothing else), each pick gets a green ring of the particle's radius around its position,
    and the ring's inside keeps the micrograph's grey."""
    image = torch.zeros(1024, 1024)
    image[::2, ::2] = 1.0  # a flat texture (the stretch maps a constant to mid-grey anyway)
    excluded = torch.zeros(1024, 1024, dtype=torch.bool)
    excluded[:, :256] = True
    picks = np.array([[600.0, 300.0], [900.0, 800.0]])
    picture = picks_thumbnail(image, picks, diameter_px=40.0, excluded=excluded, size_px=512)
    assert picture.shape == (512, 512, 3) and picture.dtype == np.uint8
    red, green, blue = (picture[..., i].astype(int) for i in range(3))
    tinted = (red - blue > 60) & (green < red)
    assert tinted[:, :128].all() and not tinted[:, 128:].any()
    ringed = (green - red > 100) & (green - blue > 100)
    for x, y in picks / 2:  # in picture pixels; the radius is 10 of them
        yy, xx = np.mgrid[0:512, 0:512]
        distance = np.hypot(xx + 0.5 - x, yy + 0.5 - y)
        assert ringed[np.abs(distance - 10) <= 0.5].mean() > 0.9
        assert (
            not ringed[distance < 8].any() and not ringed[(distance > 12) & (distance < 30)].any()
        )
    assert ringed.sum() < 2 * 2 * np.pi * 10 * 2  # two rings of about 1.5 px width, nothing more
    with pytest.raises(ValueError, match=r"excluded must be \(1024, 1024\)"):
        picks_thumbnail(image, picks, diameter_px=40.0, excluded=excluded[:10])
