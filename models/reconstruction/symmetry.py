"""Point-group symmetry in RELION's standard orientations: :func:`symmetry_matrices`.

``C<n>``: ``n``-fold axis along z. ``D<n>``: ``C<n>`` plus a 2-fold axis along x. ``T``: 2-fold
axes along x, y and z, 3-fold along (1, 1, 1). ``O``: 4-fold axes along x, y and z. ``I``:
2-fold axes along x, y and z, a 5-fold axis along ``(1, 0, golden ratio)``.
A map with the symmetry equals itself turned by any of the matrices, so a particle's
projection at pose ``A`` is also its projection at ``A S`` for each of them: a symmetric
reconstruction adds every particle at all of these poses.
"""

from __future__ import annotations

import math
import re

import numpy as np

__all__ = ["symmetry_matrices"]


def _about(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * (k @ k)


def _closure(generators: list[np.ndarray]) -> np.ndarray:
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        found = []
        for element in frontier:
            for generator in generators:
                candidate = generator @ element
                if not any(np.allclose(candidate, g, atol=1e-8) for g in group):
                    group.append(candidate)
                    found.append(candidate)
        frontier = found
        if len(group) > 60:
            raise ValueError("the generators do not close into a point group of <= 60 elements")
    return np.stack(group)


def symmetry_matrices(name: str) -> np.ndarray:
    """``(|G|, 3, 3)`` rotations of the point group ``name`` (C1, C<n>, D<n>, T, O, I)."""
    text = name.strip().upper()
    z, x = np.array([0.0, 0, 1]), np.array([1.0, 0, 0])
    if match := re.fullmatch(r"([CD])(\d+)", text):
        n = int(match.group(2))
        if n < 1:
            raise ValueError(f"symmetry {name!r}: the order must be >= 1")
        generators = [_about(z, 2 * math.pi / n)]
        if match.group(1) == "D":
            generators.append(_about(x, math.pi))
        return _closure(generators)
    if text == "T":
        return _closure([_about(z, math.pi), _about(np.array([1.0, 1, 1]), 2 * math.pi / 3)])
    if text == "O":
        return _closure([_about(z, math.pi / 2), _about(x, math.pi / 2)])
    if text == "I":
        golden = (1 + 5**0.5) / 2
        five = np.array([1.0, 0.0, golden])  # a 5-fold axis in the xz plane
        return _closure([_about(z, math.pi), _about(x, math.pi), _about(five, 2 * math.pi / 5)])
    raise ValueError(f"symmetry {name!r} is not C<n>, D<n>, T, O or I")
