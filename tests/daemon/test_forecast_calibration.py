"""The forecast's calibration check against sessions whose outcome is known: an exact SSNR
model (every forecast right), and outcomes scattered about it with a known spread per doubling
of the particles (the z-scores are then standard normal, or twice as wide)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from causalscope.daemon.bench.forecast_calibration import forecast_calibration
from causalscope.models.reconstruction.forecast import LOG_SD_PER_DOUBLING, SsnrForecast

_SHELLS = 25  # a box of 48 px
_MODEL = SsnrForecast(log_amplitude=1.0, bfactor_angstrom2=60.0, particles=1000)


def _fsc(particles: int) -> list[float]:
    """The half-map FSC of ``particles`` particles under :data:`_MODEL` (1 A/px)."""
    k = np.arange(_SHELLS) / (2 * (_SHELLS - 1))
    k[0] = 1e-3
    ssnr = np.exp(_MODEL.log_amplitude - _MODEL.bfactor_angstrom2 / 2 * k**2) / k
    ssnr *= particles / _MODEL.particles
    return (ssnr / (1 + ssnr)).tolist()


def _size(particles: int, resolution: float) -> dict[str, object]:
    return {
        "particles": particles,
        "fsc_curve": _fsc(particles),
        "fsc_0143_unmasked_angstrom": resolution,
    }


def test_forecasts_that_are_exact_have_no_error() -> None:
    sizes = [500, 1000, 2000, 4000, 8000]
    runs = [{"seed": 0, "sizes": [_size(n, _MODEL.resolution_at(n)) for n in sizes]}]
    result = forecast_calibration(runs, pixel_size_angstrom=1.0)
    assert result["pairs"] == 10  # every size from 500 forecasts every larger one
    assert abs(result["z_mean"]) < 0.05 and result["z_sd"] < 0.05
    assert result["fitted_sd_per_doubling"] < 0.002
    assert result["within_1_sd"] == 1.0
    assert set(result["by_doublings"]) == {"1", "2", "3", "4"}


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_outcomes_scattered_with_a_known_spread(scale: float) -> None:
    """Each seed: a forecast from N and one outcome at 2^k N, off by a normal log-error of sd
    ``scale * LOG_SD_PER_DOUBLING * k``."""
    rng = np.random.default_rng(1)
    runs = []
    for seed in range(600):
        k = int(rng.integers(1, 4))
        n, m = 1000, 1000 * 2**k
        error = rng.normal(0.0, scale * LOG_SD_PER_DOUBLING * k)
        outcome = _MODEL.resolution_at(m) * math.exp(error)
        runs.append({"seed": seed, "sizes": [_size(n, math.nan), _size(m, outcome)]})
    result = forecast_calibration(runs, pixel_size_angstrom=1.0)
    assert result["pairs"] == 600 and result["seeds"] == 600
    assert result["z_sd"] == pytest.approx(scale, rel=0.08)
    assert result["fitted_sd_per_doubling"] == pytest.approx(scale * LOG_SD_PER_DOUBLING, rel=0.08)
    assert abs(result["z_mean"]) < 0.1 * scale
    if scale == 1.0:  # calibrated: P(reach) says what happens
        assert result["within_1_sd"] == pytest.approx(0.683, abs=0.05)
        assert result["within_2_sd"] == pytest.approx(0.954, abs=0.03)
        for row in result["reliability"]:
            assert row["p_observed"] == pytest.approx(row["p_forecast"], abs=0.06)
        assert max(result["pit_deciles"]) < 90  # about 60 in each tenth
    else:  # overconfident: far fewer outcomes within one stated sd
        assert result["within_1_sd"] < 0.45
        low, high = result["reliability"][0], result["reliability"][-1]
        assert low["p_observed"] > low["p_forecast"] + 0.1
        assert high["p_observed"] < high["p_forecast"] - 0.1


def test_nothing_to_check_without_a_later_size() -> None:
    runs = [{"seed": 0, "sizes": [_size(1000, _MODEL.resolution_at(1000))]}]
    assert forecast_calibration(runs, pixel_size_angstrom=1.0) == {"pairs": 0, "seeds": 0}
