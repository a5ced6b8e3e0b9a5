"""The shipped model: it loads, is small, and beats phase flipping on a simulated exposure."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from causalscope.models.denoise import default_model, denoise_half_sums, parameter_count
from tests.models.denoise.conftest import flipped_resolution, simulate_halves


def test_shipped_weights_are_small_and_documented() -> None:
    data = resources.files("causalscope.models").joinpath("data")
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
    raw = flipped_resolution(even + odd, sim)
    denoised = flipped_resolution(denoise_half_sums(even, odd, default_model()), sim)
    gain = 100.0 * (raw / denoised - 1.0)
    assert gain >= margin_percent, f"phase flip {raw:.2f} A, N2N {denoised:.2f} A: {gain:.1f} %"
