"""Dose weighting against Grant & Grigorieff's formula and its physical properties."""

from __future__ import annotations

import math

import pytest
import torch

from causalscope.models.dose import critical_exposure_e_per_a2, dose_filter


def test_critical_exposure_reference_values() -> None:
    k = torch.tensor([0.1, 0.25, 0.5], dtype=torch.float64)
    ne = critical_exposure_e_per_a2(k, voltage_kv=300)
    expected = [0.245 * x**-1.665 + 2.81 for x in (0.1, 0.25, 0.5)]
    assert ne.tolist() == pytest.approx(expected, rel=1e-12)
    assert critical_exposure_e_per_a2(k, voltage_kv=200).tolist() == pytest.approx(
        [0.8 * e for e in expected], rel=1e-12
    )


def test_filter_in_unit_interval_and_monotonic() -> None:
    k = torch.linspace(0, 0.5, 101, dtype=torch.float64)
    weights = dose_filter(
        k, accumulated_dose_e_per_a2=torch.tensor([0.0, 10.0, 40.0]), voltage_kv=300
    )
    assert weights.shape == (3, 101)
    assert torch.all(weights > 0) and torch.all(weights <= 1)
    assert torch.all(weights[0] == 1)  # no dose, no damage
    assert torch.all(weights[:, 0] == 1)  # the mean is never damaged
    assert torch.all(weights[2] <= weights[1])  # more dose, less signal
    assert torch.all(torch.diff(weights[2]) <= 0)  # high frequencies fade first
    # at k = 0.25 and 20 e/A^2: exp(-20 / (2 Ne))
    value = dose_filter(
        torch.tensor([0.25], dtype=torch.float64), accumulated_dose_e_per_a2=20.0, voltage_kv=300
    )
    ne = 0.245 * 0.25**-1.665 + 2.81
    assert value.item() == pytest.approx(math.exp(-20 / (2 * ne)))


def test_rejects_unsupported_voltage_and_negative_dose() -> None:
    with pytest.raises(ValueError, match="120"):
        critical_exposure_e_per_a2(torch.tensor([0.1]), voltage_kv=120)
    with pytest.raises(ValueError, match="-1"):
        dose_filter(torch.tensor([0.1]), accumulated_dose_e_per_a2=-1.0, voltage_kv=300)
