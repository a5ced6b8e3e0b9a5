"""The shipped model: it loads, is small, and beats phase flipping on a simulated exposure."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import torch

from models.denoise import default_model, denoise_half_sums, parameter_count
from models.restoration import fourier_ring_correlation, frc_resolution_angstrom, phase_flip
from tests.models.denoise.conftest import simulate_halves


def test_shipped_weights_are_small_and_documented() -> None:
    data = resources.files("models").joinpath("data")
    weights = data.joinpath("n2n_default.pt").read_bytes()
    record = json.loads(data.joinpath("n2n_default.json").read_text())
    assert len(weights) < 2 * 2**20
    model = default_model()
    assert record["model"]["parameters"] == parameter_count(model) < 300_000
    assert record["training"]["final_loss"] < record["training"]["first_loss"]
    assert {"date", "software_version", "data", "training"} <= set(record)


@pytest.mark.parametrize(
    ("dose_e_per_a2", "ice_thickness_nm", "margin_percent"),
    # typical: the second Thon lobe correlates above 0.5 (the bench's 24 % bar); the low-dose
    # and thick-ice margins stay loose: there the shipped model gains 24-80 % by seed
    [(40.0, 30.0, 24.0), (10.0, 30.0, 10.0), (40.0, 100.0, 2.0)],
)
def test_default_model_improves_frc_resolution_over_phase_flip(
    dose_e_per_a2: float, ice_thickness_nm: float, margin_percent: float
) -> None:
    even, odd, sim = simulate_halves(
        1024, seed=0, dose_e_per_a2=dose_e_per_a2, ice_thickness_nm=ice_thickness_nm
    )
    truth = sim.truth
    ctf = {
        "pixel_size_angstrom": 1.0,
        "defocus_u_angstrom": truth["defocus_u_angstrom"],
        "defocus_v_angstrom": truth["defocus_v_angstrom"],
        "defocus_angle_deg": truth["defocus_angle_deg"],
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "amplitude_contrast": 0.07,
    }
    clean = torch.from_numpy(sim.clean_phase)

    def resolution(image: torch.Tensor) -> float:
        flipped = phase_flip(image.mean() - image, **ctf)
        frc = fourier_ring_correlation(flipped, clean)
        return frc_resolution_angstrom(frc, pixel_size_angstrom=1.0)

    raw = resolution(even + odd)
    denoised = resolution(denoise_half_sums(even, odd, default_model()))
    gain = 100.0 * (raw / denoised - 1.0)
    assert gain >= margin_percent, f"phase flip {raw:.2f} A, N2N {denoised:.2f} A: {gain:.1f} %"
