"""How well a set of poses covers the views of a map: :func:`orientation_coverage`.

A pose ``A`` looks along ``A^T z`` in the map's frame (the third row of ``A``); ``d`` and
``-d`` give the same central plane in Fourier space, so directions are taken up to sign. With
a point group, every direction counts for all its symmetry mates. Coverage is the share of
evenly spread directions (a Fibonacci sphere) within ``within_deg`` of a particle's view; the
largest gap is the angle from the worst-served direction to its nearest view: a map with
preferred orientation has low coverage and a large gap, whatever its particle count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["OrientationCoverage", "orientation_coverage"]


@dataclass(frozen=True)
class OrientationCoverage:
    """Share of directions within ``within_deg`` of a view, and the largest gap (degrees)."""

    coverage: float
    largest_gap_deg: float
    within_deg: float


def _fibonacci(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5**0.5) * i
    return np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], 1
    )


def orientation_coverage(
    rotations: np.ndarray,
    *,
    symmetry: np.ndarray | None = None,
    within_deg: float = 15.0,
    n_directions: int = 2000,
) -> OrientationCoverage:
    """Coverage of ``(n, 3, 3)`` poses (RELION's matrices), optionally under ``(g, 3, 3)``."""
    rotations = np.asarray(rotations, dtype=np.float64)
    if rotations.ndim != 3 or rotations.shape[1:] != (3, 3) or len(rotations) == 0:
        raise ValueError(f"rotations must be (n >= 1, 3, 3), got {rotations.shape}")
    views = rotations[:, 2, :]
    if symmetry is not None:  # a view d at pose A S is S^T d
        views = np.einsum("gji,nj->gni", np.asarray(symmetry, np.float64), views).reshape(-1, 3)
    directions = _fibonacci(n_directions)
    cosine = np.zeros(n_directions)
    for start in range(0, len(views), 4096):
        chunk = np.abs(directions @ views[start : start + 4096].T)
        cosine = np.maximum(cosine, chunk.max(axis=1))
    angle = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    return OrientationCoverage(
        coverage=float(np.mean(angle <= within_deg)),
        largest_gap_deg=float(angle.max()),
        within_deg=within_deg,
    )
