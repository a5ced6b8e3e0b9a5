"""Shared simulations for the CTF-estimation tests (simulated once per session)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from causalscope.models.simulate.exposure import ExposureParameters, simulate_exposure
from causalscope.models.simulate.specimen import phantom_specimen

OPTICS = {
    "pixel_size_angstrom": 1.0,
    "voltage_kv": 300.0,
    "spherical_aberration_mm": 2.7,
    "amplitude_contrast": 0.07,
}

#: (mean defocus A, astigmatism A, angle deg, ice nm, dose e/A^2, size px): defocus 0.5-3 um,
#: ice 20-80 nm (20, 35, 50, 65, 80 all present), 30-50 e/A^2, 1024^2 and one 2048^2
CASES = [
    (5_000.0, 0.0, 0.0, 20.0, 30.0, 1024),
    (10_000.0, 300.0, 40.0, 50.0, 40.0, 1024),
    (15_000.0, 600.0, 120.0, 80.0, 50.0, 1024),
    (20_000.0, 200.0, 75.0, 35.0, 40.0, 1024),
    (30_000.0, 400.0, 160.0, 65.0, 30.0, 1024),
    (12_000.0, 500.0, 10.0, 40.0, 40.0, 2048),
]


@dataclass(frozen=True)
class Case:
    defocus: float
    astigmatism: float
    angle: float
    ice_nm: float
    image: torch.Tensor


def simulate(
    defocus: float,
    astigmatism: float,
    angle: float,
    ice_nm: float,
    dose: float,
    size: int,
    seed: int,
    **extra: float,
) -> torch.Tensor:
    # one frame, no motion: the sum of a drift-free movie is one Poisson frame of the whole dose
    params = ExposureParameters(
        size_px=size,
        n_frames=1,
        dose_e_per_a2=dose,
        defocus_u_angstrom=defocus + astigmatism / 2,
        defocus_v_angstrom=defocus - astigmatism / 2,
        defocus_angle_deg=angle,
        ice_thickness_nm=ice_nm,
        drift_total_px=0.0,
        drift_jitter_px=0.0,
        local_motion_px=0.0,
        intra_frame_blur=False,
        seed=seed,
        **extra,  # type: ignore[arg-type]
    )
    sim = simulate_exposure(params, specimen=phantom_specimen())
    return torch.tensor(sim.frames.sum(0), dtype=torch.float32)


@pytest.fixture(scope="session")
def simulated_cases() -> list[Case]:
    return [
        Case(d, a, ang, ice, simulate(d, a, ang, ice, dose, size, seed=i + 1))
        for i, (d, a, ang, ice, dose, size) in enumerate(CASES)
    ]
