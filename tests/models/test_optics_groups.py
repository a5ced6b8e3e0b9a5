"""Shift groups from simulated exposures with known multishot positions."""

from __future__ import annotations

import numpy as np
import pytest

from causalscope.models.optics_groups import cluster_image_shifts


def _pattern(
    rows: int, cols: int, per: int, jitter: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``per`` exposures at each of ``rows x cols`` positions 1.5 um apart, shuffled."""
    rng = np.random.default_rng(seed)
    centres = np.array([(1.5 * c, 1.5 * r) for r in range(rows) for c in range(cols)])
    truth = np.repeat(np.arange(len(centres)), per)
    xy = centres[truth] + rng.normal(0.0, jitter, (truth.size, 2))
    order = rng.permutation(truth.size)
    return xy[order], truth[order]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize(("rows", "cols", "jitter"), [(3, 3, 0.02), (2, 2, 0.05), (1, 5, 0.0)])
def test_known_positions_are_recovered(rows: int, cols: int, jitter: float) -> None:
    xy, truth = _pattern(rows, cols, 12, jitter, seed=rows * 10 + cols)
    labels = cluster_image_shifts(xy)
    assert len(set(labels.tolist())) == rows * cols
    assert _same_partition(labels, truth)


def test_groups_are_numbered_by_y_then_x() -> None:
    xy, truth = _pattern(3, 3, 5, 0.01, seed=1)
    labels = cluster_image_shifts(xy)
    # positions were laid out row by row (y) and left to right (x): the numbering is the truth's
    assert np.array_equal(labels, truth)


def test_one_position_with_jitter_is_one_group() -> None:
    xy = np.random.default_rng(2).normal(0.0, 0.03, (40, 2))
    assert set(cluster_image_shifts(xy).tolist()) == {0}


def test_a_given_number_of_groups_is_used() -> None:
    xy, truth = _pattern(2, 2, 10, 0.02, seed=3)
    labels = cluster_image_shifts(xy, n_groups=4)
    assert _same_partition(labels, truth)
    assert set(cluster_image_shifts(xy, n_groups=2).tolist()) == {0, 1}


def test_bad_shifts_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        cluster_image_shifts(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="finite"):
        cluster_image_shifts(np.array([[0.0, np.nan], [1.0, 1.0]]))
