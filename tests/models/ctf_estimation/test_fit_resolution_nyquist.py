"""A fit resolution is never claimed beyond Nyquist: the equiphase radii of an astigmatic
spectrum's corners reach past it (a noiseless spectrum at 2 A/px was fitted to 3.81 A)."""

from __future__ import annotations

import pytest
from torch_ctf import calculate_ctf_2d

from causalscope.models.ctf_estimation import estimate_ctf


def test_an_astigmatic_spectrum_that_rings_to_the_corners_stops_at_nyquist() -> None:
    n, apix = 512, 2.0
    ctf = calculate_ctf_2d(
        defocus=1.8,
        astigmatism=0.2,
        astigmatism_angle=30.0,
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.07,
        phase_shift=0.0,
        pixel_size=apix,
        image_shape=(n, n),
        rfft=False,
        fftshift=True,
    )
    spectrum = (ctf[0] if ctf.ndim == 3 else ctf) ** 2 + 0.5
    found = estimate_ctf(
        spectrum.float(),
        pixel_size_angstrom=apix,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        is_power_spectrum=True,
        box_px=n,
        max_resolution_angstrom=2.1 * apix,
        min_resolution_angstrom=30.0,
        defocus_min_um=0.5,
        defocus_max_um=4.0,
    )
    assert found.defocus_u_angstrom == pytest.approx(20_000, abs=20)
    assert found.defocus_v_angstrom == pytest.approx(16_000, abs=20)
    assert found.fit_resolution_angstrom == pytest.approx(2 * apix)  # up to Nyquist, not past
