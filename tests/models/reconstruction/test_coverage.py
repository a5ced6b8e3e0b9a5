"""Orientation coverage: uniform poses cover every view, top views cover two caps, and a
symmetry multiplies what a few views cover."""

from __future__ import annotations

import math

import numpy as np
import pytest

from causalscope.models.reconstruction import symmetry_matrices
from causalscope.models.reconstruction.coverage import orientation_coverage
from causalscope.models.rotations import euler_matrices, random_rotations


def test_uniform_poses_cover_every_view() -> None:
    result = orientation_coverage(random_rotations(np.random.default_rng(0), 5000))
    assert result.coverage == 1.0 and result.largest_gap_deg < 6.0


def test_top_views_cover_two_polar_caps() -> None:
    rng = np.random.default_rng(1)
    euler = np.stack(
        [rng.uniform(0, 360, 500), rng.uniform(0, 5, 500), rng.uniform(0, 360, 500)], 1
    )
    result = orientation_coverage(euler_matrices(euler), within_deg=15.0)
    # views within 5 deg of the pole, counted within 15: the caps within 20 deg, both poles
    assert result.coverage == pytest.approx(1 - math.cos(math.radians(20.0)), abs=0.01)
    assert result.largest_gap_deg == pytest.approx(85.0, abs=1.0)  # the equator, 90 - 5


def test_symmetry_spreads_a_few_views() -> None:
    rotations = random_rotations(np.random.default_rng(2), 10)
    alone = orientation_coverage(rotations)
    octahedral = orientation_coverage(rotations, symmetry=symmetry_matrices("O"))
    assert octahedral.coverage > 2 * alone.coverage


def test_no_poses_is_an_error() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        orientation_coverage(np.zeros((0, 3, 3)))
