"""``bench scores``' true errors: what Delta-Repro is ranked against, on known numbers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from causalscope.daemon.bench.repro import ERRORS, spearman_by_error, true_errors

TRUTH = {
    "defocus_u_angstrom": 15_000.0,
    "defocus_v_angstrom": 14_800.0,
    "defocus_angle_deg": 0.0,
    "shifts_px": [[0.0, 0.0], [1.375, 0.0]],
    "particles": [0] * 40,
}


def _record(u: float, v: float, angle: float, shift_x: float, picked: int) -> SimpleNamespace:
    return SimpleNamespace(
        ctf=SimpleNamespace(defocus_u_angstrom=u, defocus_v_angstrom=v, defocus_angle_deg=angle),
        motion=SimpleNamespace(shifts_px=[[0.0, 0.0], [shift_x, 0.0]]),
        picking=SimpleNamespace(n_particles=picked),
    )


def test_the_errors_against_a_known_truth() -> None:
    # 100 A more defocus in every direction, the second frame 0.375 px short, 30 of 40 picked
    errors = true_errors(
        _record(15_100.0, 14_900.0, 0.0, 1.0, 30), TRUTH, pixel_size_angstrom=1.0, voltage_kv=300
    )
    assert errors["defocus_error_angstrom"] == pytest.approx(100.0)
    assert errors["astigmatism_error_angstrom"] == pytest.approx(0.0, abs=1e-9)
    assert errors["ctf_error_angstrom"] == pytest.approx(100.0)
    assert errors["drift_error_px"] == pytest.approx(0.375 / math.sqrt(2))
    assert errors["pick_count_error"] == pytest.approx(0.25)
    # each on Delta-Repro's scale at 3 A and 300 kV (114.3 A of defocus, 0.375 A of shift)
    expected = math.sqrt(0.5 * ((100.0 / 114.3) ** 2 + (1 / math.sqrt(2)) ** 2))
    assert errors["estimate_error"] == pytest.approx(expected, rel=2e-3)
    # the same astigmatism named the other way round is no error; turned 90 degrees, it is
    swapped = true_errors(
        _record(14_800.0, 15_000.0, 90.0, 1.375, 40), TRUTH, pixel_size_angstrom=1.0, voltage_kv=300
    )
    assert swapped["ctf_error_angstrom"] == pytest.approx(0.0, abs=1e-6)
    turned = true_errors(
        _record(15_000.0, 14_800.0, 90.0, 1.375, 40), TRUTH, pixel_size_angstrom=1.0, voltage_kv=300
    )
    assert turned["ctf_error_angstrom"] == pytest.approx(200.0)
    assert turned["astigmatism_error_angstrom"] == pytest.approx(400.0)


def test_spearman_ranks_the_score_against_each_error() -> None:
    rows = [
        {**dict.fromkeys(ERRORS), "delta_repro": 1.0 - 0.1 * i, "estimate_error": float(i)}
        for i in range(6)
    ]
    found = spearman_by_error(rows)
    assert found["estimate_error"] == pytest.approx(1.0)
    assert found["ctf_error_angstrom"] is None  # not measured in any row
