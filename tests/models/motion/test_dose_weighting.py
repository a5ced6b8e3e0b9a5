"""Dose-weighting identities and the sums built with them."""

from __future__ import annotations

import pytest
import torch

from causalscope.models.dose import dose_filter
from causalscope.models.motion import correct_motion, dose_weights
from tests.models.motion.conftest import Case


def test_weights_unit_interval_and_norm() -> None:
    k = torch.linspace(0, 0.5, 64, dtype=torch.float64)
    w = dose_weights(k, n_frames=30, dose_per_frame_e_per_a2=1.5, voltage_kv=300)
    assert torch.all(w > 0) and torch.all(w <= 1)
    assert torch.allclose((w * w).sum(0), torch.ones_like(k))
    assert torch.allclose(w[:, 0], torch.full((30,), 30**-0.5, dtype=torch.float64))
    assert torch.all(w[0, 1:] >= w[-1, 1:])  # early frames weigh more at k > 0


def test_weights_batched_equal_looped() -> None:
    k = torch.linspace(0, 0.5, 33, dtype=torch.float64)
    w = dose_weights(
        k, n_frames=5, dose_per_frame_e_per_a2=2.0, voltage_kv=200, pre_exposure_e_per_a2=1.0
    )
    q = torch.stack(
        [
            dose_filter(k, accumulated_dose_e_per_a2=1.0 + 2.0 * (f + 1), voltage_kv=200)
            for f in range(5)
        ]
    )
    assert torch.allclose(w, q / q.pow(2).sum(0).sqrt())


def test_even_odd_and_mean(detector_case: Case) -> None:
    r = detector_case.result
    assert torch.equal(r.even_sum + r.odd_sum, r.dose_weighted_sum)
    # the weights keep the mean (DC) of the plain sum
    assert float(r.dose_weighted_sum.mean()) == pytest.approx(float(r.aligned_sum.mean()), rel=1e-4)
    assert float(r.ctf_sum.mean()) == pytest.approx(float(r.aligned_sum.mean()), rel=1e-4)
    # Poisson variance of the CTF sum: mean of gain x sum
    assert r.ctf_sum_noise_variance == pytest.approx(float(r.ctf_sum.mean()), rel=0.05)


def test_without_weighting_sums_agree(detector_case: Case) -> None:
    frames = detector_case.sim.frames[:6, :256, :256]
    r = correct_motion(
        frames,
        pixel_size_angstrom=1.0,
        voltage_kv=120,
        dose_per_frame_e_per_a2=2.0,
        dose_weighting=False,
        local=False,
    )
    assert torch.allclose(r.dose_weighted_sum, r.aligned_sum, rtol=1e-5, atol=1e-3)
    assert torch.equal(r.aligned_sum, r.ctf_sum)
    with pytest.raises(ValueError, match="200 and 300 kV"):
        correct_motion(frames, pixel_size_angstrom=1.0, voltage_kv=120, dose_per_frame_e_per_a2=2.0)
