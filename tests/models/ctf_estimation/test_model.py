"""The fit's parametrisation against models.ctf, the astigmatism grid's correlations against
the model evaluated point by point, and the ice modulation against slab sums."""

from __future__ import annotations

import math

import torch

from causalscope.models.ctf import ctf_at
from causalscope.models.ctf_estimation._fit import grid_correlations, search_astigmatism
from causalscope.models.ctf_estimation._model import (
    Optics,
    make_band,
    ring_model,
    window_attenuation,
)
from causalscope.models.ctf_estimation.ice import ice_modulation
from causalscope.models.ctf_estimation.spectrum import tile_window
from causalscope.models.units import electron_wavelength_angstrom


def test_ring_model_is_twice_ctf_squared_minus_one() -> None:
    optics = Optics(300.0, 2.7, 0.07)
    band = make_band(torch.zeros(128, 128), pixel_size_angstrom=1.0, k_min=0.02, k_max=0.45)
    d_u, d_v, angle, phase = 15_300.0, 14_700.0, 30.0, 40.0
    half = 0.5 * (d_u - d_v)
    params = torch.tensor(
        [
            0.5 * (d_u + d_v),
            half * math.cos(math.radians(2 * angle)),
            half * math.sin(math.radians(2 * angle)),
            math.radians(phase),
        ],
        dtype=torch.float64,
    )
    theta = 0.5 * torch.atan2(band.sin2, band.cos2)
    kx, ky = band.k * torch.cos(theta), band.k * torch.sin(theta)
    ctf = ctf_at(
        kx,
        ky,
        defocus_u_angstrom=d_u,
        defocus_v_angstrom=d_v,
        defocus_angle_deg=angle,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        phase_shift_deg=phase,
    )
    torch.testing.assert_close(
        ring_model(band, params, optics), (2 * ctf**2 - 1).reshape(-1), atol=1e-9, rtol=0
    )


def test_astigmatism_grid_correlations_equal_the_model_point_by_point() -> None:
    """Each grid point's correlation, from the matrix products, equals the weighted
    correlation of ``ring_model`` evaluated at that point's parameters (to rounding), and the
    search returns the truth when the data are the model itself."""
    optics = Optics(300.0, 2.7, 0.07)
    band = make_band(torch.zeros(256, 256), pixel_size_angstrom=1.0, k_min=0.03, k_max=0.25)
    truth = torch.tensor([20_000.0, 250.0, -125.0, 0.3], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    y = ring_model(band, truth, optics) + 0.5 * torch.randn(
        band.k.shape, generator=generator, dtype=torch.float64
    )
    weight = 1.0 / (1.0 + 20.0 * band.k)
    grid = torch.arange(-4, 5, dtype=torch.float64) * 125.0
    fast = grid_correlations(
        band, y, weight, optics, defoci_angstrom=[20_050.0], phase_shift_rad=0.3, grid=grid
    )
    a1, a2 = torch.meshgrid(grid, grid, indexing="ij")
    params = torch.stack(
        [torch.full_like(a1, 20_050.0), a1, a2, torch.full_like(a1, 0.3)], -1
    ).reshape(-1, 4)
    model = ring_model(band, params, optics) * weight
    direct = (model * y).sum(-1) / torch.sqrt((model * model).sum(-1) * (y * y).sum())
    torch.testing.assert_close(fast.reshape(-1), direct, atol=1e-12, rtol=0)
    found = search_astigmatism(
        band,
        ring_model(band, truth, optics),
        torch.ones_like(band.k),
        optics,
        defocus_angstrom=20_000.0,
        phase_shift_rad=0.3,
        max_half_astigmatism_angstrom=500.0,
    )
    torch.testing.assert_close(found, truth, atol=1e-9, rtol=0)


def test_ice_modulation_is_the_slab_average() -> None:
    k = torch.linspace(0.05, 0.4, 50, dtype=torch.float64)
    lam = electron_wavelength_angstrom(300.0)
    t = 600.0  # A
    z = (torch.arange(2000, dtype=torch.float64) + 0.5) / 2000 * t - t / 2
    averaged = torch.cos(2 * math.pi * lam * k[:, None] ** 2 * z).mean(-1)
    torch.testing.assert_close(
        ice_modulation(k, thickness_nm=60.0, voltage_kv=300.0), averaged, atol=1e-5, rtol=0
    )


def test_window_attenuation_of_a_rectangular_window() -> None:
    window = tile_window(64, taper_px=0)
    lags = torch.tensor([0.0, 16.0, 32.0])
    torch.testing.assert_close(
        window_attenuation(lags, torch.zeros(3), window), 1 - lags.double() / 64
    )
