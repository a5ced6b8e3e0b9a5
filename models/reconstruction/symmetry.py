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
import torch
import torch.nn.functional as F

from causalscope.models.rotations import rotation_angle_deg

__all__ = ["self_correlations", "symmetric_angle_deg", "symmetry_matrices"]


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


def symmetric_angle_deg(a: np.ndarray, b: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``(...)`` angular error in degrees of assigned poses ``a`` against the true ``b``
    (``(..., 3, 3)`` each) of a map with the symmetry ``group`` (``(|G|, 3, 3)``,
    :func:`symmetry_matrices`): the smallest angle from ``a`` to any ``b S``, the poses that
    give the same projection. With ``C1`` it is the plain angle."""
    a, b, group = np.asarray(a), np.asarray(b), np.asarray(group)
    if group.ndim != 3 or group.shape[1:] != (3, 3):
        raise ValueError(f"group must be (|G|, 3, 3) rotations, got shape {group.shape}")
    mates = np.einsum("...ij,gjk->...gik", b, group)
    angles: np.ndarray = rotation_angle_deg(a[..., None, :, :], mates).min(axis=-1)
    return angles


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


def self_correlations(volume: torch.Tensor, matrices: np.ndarray) -> tuple[float, ...]:
    """Correlation of ``volume`` ``(b, b, b)`` (``[z, y, x]``, centre at ``b // 2``) with
    itself turned by each of ``matrices`` ``(g, 3, 3)`` other than the identity, inside the
    sphere the box holds (trilinear interpolation). A map with that symmetry gives values near
    1 (less by the interpolation's blur); a map without it, or with its axes elsewhere, less."""
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"volume must be a cube (b, b, b), got {tuple(volume.shape)}")
    box = volume.shape[-1]
    v = volume.to(torch.float32)
    axis = (torch.arange(box, dtype=torch.float32) - box // 2) / (box / 2)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    xyz = torch.stack([x, y, z], dim=-1)  # normalised like grid_sample's (x, y, z) order
    inside = xyz.norm(dim=-1) <= 1.0 - 2.0 / box
    centre = v[inside] - v[inside].mean()
    found = []
    for matrix in np.asarray(matrices, dtype=np.float32):
        if np.allclose(matrix, np.eye(3), atol=1e-6):
            continue
        grid = xyz @ torch.as_tensor(matrix).T
        # grid_sample's normalised -1..1 spans pixel centres 0..b-1; ours has b // 2 at 0
        grid = (grid * (box / 2) + box // 2) / (box - 1) * 2 - 1
        turned = F.grid_sample(
            v[None, None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True
        )[0, 0]
        other = turned[inside] - turned[inside].mean()
        denominator = float(centre.norm() * other.norm())
        found.append(float((centre * other).sum()) / denominator if denominator > 0 else 0.0)
    return tuple(found)
