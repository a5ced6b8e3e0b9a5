"""Rotations in RELION's convention: ZYZ Euler angles (rot, tilt, psi) in degrees.

A pose's matrix ``A`` (RELION's ``Euler_angles2matrix``) takes the map's coordinates to the
image's: a particle's atom at ``r`` in the map lands at ``(A r)_xy`` in its projection, the
projection running along the image's z. The simulator places atoms the same way
(``coords @ A.T``), so its truth angles are what RELION would write.
"""

from __future__ import annotations

import numpy as np

__all__ = ["euler_matrices", "euler_zyz_from_matrices", "random_rotations", "rotation_angle_deg"]


def euler_matrices(euler_deg: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` matrices of ``(..., 3)`` RELION Euler angles (rot, tilt, psi) in degrees."""
    angles = np.deg2rad(np.asarray(euler_deg, dtype=np.float64))
    if angles.shape[-1:] != (3,):
        raise ValueError(f"euler_deg must be (..., 3) rot, tilt, psi; got shape {angles.shape}")
    ca, cb, cg = np.cos(angles[..., 0]), np.cos(angles[..., 1]), np.cos(angles[..., 2])
    sa, sb, sg = np.sin(angles[..., 0]), np.sin(angles[..., 1]), np.sin(angles[..., 2])
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def euler_zyz_from_matrices(rotations: np.ndarray) -> np.ndarray:
    """``(n, 3)`` RELION ZYZ Euler angles (rot, tilt, psi) in degrees of ``(n, 3, 3)`` matrices."""
    r = rotations
    tilt = np.arccos(np.clip(r[:, 2, 2], -1.0, 1.0))
    rot = np.arctan2(r[:, 2, 1], r[:, 2, 0])
    psi = np.arctan2(r[:, 1, 2], -r[:, 0, 2])
    gimbal = np.abs(np.sin(tilt)) < 1e-6
    rot = np.where(gimbal, 0.0, rot)
    psi = np.where(gimbal, np.arctan2(-r[:, 1, 0], r[:, 0, 0]), psi)
    return np.rad2deg(np.stack([rot, tilt, psi], axis=1))


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3, 3)`` rotation matrices uniform on SO(3) (normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees of the rotation that takes ``b`` to ``a`` (``(..., 3, 3)`` each): the
    angular error of an assigned pose ``a`` against the true ``b``."""
    trace = np.einsum("...ij,...ij->...", np.asarray(a), np.asarray(b))
    return np.rad2deg(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))
