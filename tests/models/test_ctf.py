"""CTF against RELION's reference value, teamtomo's torch-ctf, and physical identities."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch_ctf import calculate_ctf_2d

from causalscope.models.ctf import (
    beam_tilt_phase,
    ctf_2d,
    ctf_at,
    frequency_grid,
    spatial_coherence_envelope,
    temporal_coherence_envelope,
)
from causalscope.models.units import electron_wavelength_angstrom

OPTICS = {"voltage_kv": 300.0, "spherical_aberration_mm": 2.7, "amplitude_contrast": 0.1}


def test_relion_reference_value() -> None:
    # RELION: CTF(dU 10000, dV 12000, 90 deg, 300 kV, Cs 2.7, Q0 0.1) at (10, 10) 1/A = 0.59154
    k = torch.tensor([[10.0]], dtype=torch.float64)
    value = ctf_at(
        k,
        k,
        defocus_u_angstrom=10000.0,
        defocus_v_angstrom=12000.0,
        defocus_angle_deg=90.0,
        **OPTICS,
    )
    assert value.item() == pytest.approx(0.59154, abs=5e-6)


def test_wavelength_reference_values_and_monotonic() -> None:
    assert electron_wavelength_angstrom(300) == pytest.approx(0.019688, abs=1e-6)
    assert electron_wavelength_angstrom(200) == pytest.approx(0.025079, abs=1e-6)
    voltages = [60, 100, 120, 200, 300]
    wavelengths = [electron_wavelength_angstrom(v) for v in voltages]
    assert all(a > b for a, b in itertools.pairwise(wavelengths))


def test_agrees_with_teamtomo_torch_ctf() -> None:
    ours = ctf_2d(
        (96, 80),
        pixel_size_angstrom=1.3,
        defocus_u_angstrom=15000.0,
        defocus_v_angstrom=13000.0,
        defocus_angle_deg=35.0,
        dtype=torch.float64,
        **OPTICS,
    )
    theirs = calculate_ctf_2d(
        defocus=1.4,
        astigmatism=0.1,
        astigmatism_angle=35.0,
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        phase_shift=0.0,
        pixel_size=1.3,
        image_shape=(96, 80),
        rfft=True,
        fftshift=False,
    )
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 2e-3


def test_amplitude_contrast_at_origin_and_zeros_where_chi_says() -> None:
    kx, ky = frequency_grid((256, 256), pixel_size_angstrom=1.0, dtype=torch.float64)
    ctf = ctf_at(
        kx,
        ky,
        defocus_u_angstrom=20000.0,
        defocus_v_angstrom=20000.0,
        defocus_angle_deg=0.0,
        **OPTICS,
    )
    assert ctf[0, 0].item() == pytest.approx(0.1, abs=1e-12)
    # first zero of an unastigmatic CTF: pi lambda df k^2 - pi/2 Cs lambda^3 k^4 = pi - asin(Q)
    lam = electron_wavelength_angstrom(300)
    target = math.pi - math.asin(0.1)
    k = torch.linspace(0.001, 0.2, 200_001, dtype=torch.float64)
    chi = math.pi * lam * 20000 * k**2 - 0.5 * math.pi * 2.7e7 * lam**3 * k**4
    k_zero = k[torch.argmin((chi - target).abs())]
    value = ctf_at(
        k_zero.reshape(1, 1),
        torch.zeros(1, 1, dtype=torch.float64),
        defocus_u_angstrom=20000.0,
        defocus_v_angstrom=20000.0,
        defocus_angle_deg=0.0,
        **OPTICS,
    )
    assert abs(value.item()) < 1e-4


def test_astigmatism_angle_is_direction_of_defocus_u() -> None:
    # along the angle the CTF equals that of a round CTF with defocus U, across it with V
    k = torch.tensor([[0.12]], dtype=torch.float64)
    angle = math.radians(40.0)
    along = ctf_at(
        k * math.cos(angle),
        k * math.sin(angle),
        defocus_u_angstrom=18000.0,
        defocus_v_angstrom=14000.0,
        defocus_angle_deg=40.0,
        **OPTICS,
    )
    round_u = ctf_at(
        k,
        k * 0,
        defocus_u_angstrom=18000.0,
        defocus_v_angstrom=18000.0,
        defocus_angle_deg=0.0,
        **OPTICS,
    )
    across = ctf_at(
        -k * math.sin(angle),
        k * math.cos(angle),
        defocus_u_angstrom=18000.0,
        defocus_v_angstrom=14000.0,
        defocus_angle_deg=40.0,
        **OPTICS,
    )
    round_v = ctf_at(
        k,
        k * 0,
        defocus_u_angstrom=14000.0,
        defocus_v_angstrom=14000.0,
        defocus_angle_deg=0.0,
        **OPTICS,
    )
    assert along.item() == pytest.approx(round_u.item(), abs=1e-12)
    assert across.item() == pytest.approx(round_v.item(), abs=1e-12)


def test_batched_parameters_equal_a_loop() -> None:
    defoci = torch.tensor([9000.0, 15000.0, 24000.0], dtype=torch.float64)
    batched = ctf_2d(
        (32, 32),
        pixel_size_angstrom=1.0,
        defocus_u_angstrom=defoci,
        defocus_v_angstrom=defoci - 500,
        defocus_angle_deg=10.0,
        dtype=torch.float64,
        **OPTICS,
    )
    assert batched.shape == (3, 32, 17)
    for i, d in enumerate(defoci.tolist()):
        single = ctf_2d(
            (32, 32),
            pixel_size_angstrom=1.0,
            defocus_u_angstrom=d,
            defocus_v_angstrom=d - 500,
            defocus_angle_deg=10.0,
            dtype=torch.float64,
            **OPTICS,
        )
        assert torch.equal(batched[i], single)


def test_beam_tilt_phase_is_odd_and_scales_with_tilt() -> None:
    kx, ky = frequency_grid((64, 64), pixel_size_angstrom=1.0, rfft=False, dtype=torch.float64)
    phase = beam_tilt_phase(
        kx,
        ky,
        beam_tilt_x_mrad=0.5,
        beam_tilt_y_mrad=-0.2,
        voltage_kv=300,
        spherical_aberration_mm=2.7,
    )
    flipped = beam_tilt_phase(
        -kx,
        -ky,
        beam_tilt_x_mrad=0.5,
        beam_tilt_y_mrad=-0.2,
        voltage_kv=300,
        spherical_aberration_mm=2.7,
    )
    assert torch.allclose(phase, -flipped)
    double = beam_tilt_phase(
        kx,
        ky,
        beam_tilt_x_mrad=1.0,
        beam_tilt_y_mrad=-0.4,
        voltage_kv=300,
        spherical_aberration_mm=2.7,
    )
    assert torch.allclose(double, 2 * phase)
    # 1 mrad at 1/3 A^-1: 2 pi Cs lambda^2 k^3 * 1e-3 = 1.20 rad
    k = torch.tensor([[1 / 3]], dtype=torch.float64)
    value = beam_tilt_phase(
        k,
        k * 0,
        beam_tilt_x_mrad=1.0,
        beam_tilt_y_mrad=0.0,
        voltage_kv=300,
        spherical_aberration_mm=2.7,
    )
    lam = electron_wavelength_angstrom(300)
    assert value.item() == pytest.approx(2 * math.pi * 2.7e7 * lam**2 / 27 * 1e-3, rel=1e-9)


def test_coherence_envelopes_are_one_at_origin_and_fall() -> None:
    k = torch.linspace(0, 0.5, 50, dtype=torch.float64).reshape(1, -1)
    zero = torch.zeros_like(k)
    temporal = temporal_coherence_envelope(
        k, zero, voltage_kv=300, chromatic_aberration_mm=2.7, energy_spread_ev=0.8
    )
    spatial = spatial_coherence_envelope(
        k,
        zero,
        defocus_angstrom=30000.0,
        voltage_kv=300,
        spherical_aberration_mm=2.7,
        illumination_aperture_mrad=0.02,
    )
    for env in (temporal, spatial):
        assert env[0, 0].item() == pytest.approx(1.0)
        assert torch.all(env <= 1.0) and torch.all(env > 0)
    assert torch.all(torch.diff(temporal[0]) <= 0)
    # more energy spread, less coherence
    wider = temporal_coherence_envelope(
        k, zero, voltage_kv=300, chromatic_aberration_mm=2.7, energy_spread_ev=1.6
    )
    assert torch.all(wider[0, 1:] < temporal[0, 1:])
