"""Small simulated half sums shared by the denoiser tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from causalscope.models.restoration import (
    fourier_ring_correlation,
    frc_resolution_angstrom,
    phase_flip,
)
from causalscope.models.simulate.exposure import (
    ExposureParameters,
    SimulatedExposure,
    simulate_exposure,
)
from causalscope.models.simulate.specimen import phantom_specimen


def simulate_halves(
    size: int, *, seed: int, dose_e_per_a2: float = 40.0, ice_thickness_nm: float = 30.0
) -> tuple[torch.Tensor, torch.Tensor, SimulatedExposure]:
    """A drift-free two-frame movie: (even, odd, simulation); even + odd is the micrograph."""
    params = ExposureParameters(
        size_px=size,
        n_frames=2,
        drift_total_px=0.0,
        drift_jitter_px=0.0,
        local_motion_px=0.0,
        intra_frame_blur=False,
        n_particles=int(30 * (size / 1024) ** 2),
        dose_e_per_a2=dose_e_per_a2,
        ice_thickness_nm=ice_thickness_nm,
        seed=seed,
    )
    sim = simulate_exposure(params, specimen=phantom_specimen())
    frames = torch.from_numpy(sim.frames.astype(np.float32))
    return frames[0], frames[1], sim


def flipped_resolution(image: torch.Tensor, sim: SimulatedExposure) -> float:
    """FRC-0.5 resolution (A) of ``image`` phase flipped with ``sim``'s true CTF (contrast
    inverted) against its clean particle image."""
    truth = sim.truth
    flipped = phase_flip(
        image.mean() - image,
        pixel_size_angstrom=1.0,
        defocus_u_angstrom=truth["defocus_u_angstrom"],
        defocus_v_angstrom=truth["defocus_v_angstrom"],
        defocus_angle_deg=truth["defocus_angle_deg"],
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    frc = fourier_ring_correlation(flipped, torch.from_numpy(sim.clean_phase))
    return frc_resolution_angstrom(frc, pixel_size_angstrom=1.0)


@pytest.fixture(scope="module")
def small_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three 256 x 256 (even, odd) pairs at different doses."""
    return [
        simulate_halves(256, seed=100 + i, dose_e_per_a2=dose)[:2]
        for i, dose in enumerate((15.0, 30.0, 50.0))
    ]
