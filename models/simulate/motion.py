"""Specimen motion during an exposure: global drift and a smooth local deformation.

Time runs in frames: frame ``f`` is exposed from ``t = f`` to ``t = f + 1``. The global
trajectory ``p(t)`` (pixels) is fastest at the start and relaxes (beam-induced motion): ``p(t)
= total * u * (1 - exp(-t / tau)) / (1 - exp(-F / tau)) + jitter(t)``. A frame shows the
specimen at its mean position over the frame, so the truth shift of frame ``f`` is
``(p(f) + p(f + 1)) / 2`` minus that of frame 0 (frame 0 has shift ``[0, 0]``), and the frame
is blurred by the straight path from ``p(f)`` to ``p(f + 1)``.

Local deformation adds ``d(x, y, f) = g(f) * sum_j c_j m_j(x', y')`` with the monomials
``m = (x', y', x'^2, y'^2, x' y')`` of centred, normalised coordinates ``x' = x / size - 0.5``
and the temporal profile ``g`` of the global drift (0 at frame 0, 1 at the last frame).
Exactly as rendered: pixel ``r`` of frame ``f`` shows the specimen point that sits at
``r - shift(f) - d(r, f)`` in frame 0 (the local field is evaluated at the frame's own pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["MotionTruth", "draw_motion", "local_displacement_px"]

N_LOCAL_TERMS = 5


@dataclass(frozen=True)
class MotionTruth:
    """The motion of one exposure.

    Attributes
    ----------
    boundary_positions_px
        ``(F + 1, 2)`` trajectory ``p(t)`` at frame boundaries, ``[x, y]``.
    shifts_px
        ``(F, 2)`` mean shift of each frame relative to frame 0.
    local_coefficients_px
        ``(2, 5)`` coefficients of the local deformation (x row, y row).
    local_profile
        ``(F,)`` temporal profile ``g`` of the local deformation.
    """

    boundary_positions_px: np.ndarray
    shifts_px: np.ndarray
    local_coefficients_px: np.ndarray
    local_profile: np.ndarray

    @property
    def frame_paths_px(self) -> np.ndarray:
        """``(F, 2)`` straight path travelled during each frame (for the motion blur)."""
        return np.diff(self.boundary_positions_px, axis=0)


def draw_motion(
    rng: np.random.Generator,
    *,
    n_frames: int,
    total_drift_px: float,
    direction_deg: float,
    decay_frames: float,
    jitter_px: float,
    local_amplitude_px: float,
) -> MotionTruth:
    """Draw a trajectory and a local deformation field with the given magnitudes.

    ``total_drift_px`` is the length of the smooth part from start to end; ``jitter_px`` the
    standard deviation of a smooth random wander added on top; ``local_amplitude_px`` the
    largest local displacement at the edge of the image by the last frame.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if decay_frames <= 0:
        raise ValueError(f"decay_frames must be positive, got {decay_frames}")
    t = np.arange(n_frames + 1, dtype=np.float64)
    profile = (1.0 - np.exp(-t / decay_frames)) / (1.0 - np.exp(-n_frames / decay_frames))
    angle = np.deg2rad(direction_deg)
    positions = total_drift_px * profile[:, None] * np.array([np.cos(angle), np.sin(angle)])
    if jitter_px > 0:
        steps = rng.normal(size=(n_frames + 1, 2))
        smooth = gaussian_filter1d(steps, sigma=2.0, axis=0, mode="nearest")
        wander = np.cumsum(smooth, axis=0)
        wander -= wander[0]
        scale = np.sqrt(np.mean(np.sum(wander**2, axis=1))) or 1.0
        positions = positions + wander * (jitter_px / scale)
    means = 0.5 * (positions[:-1] + positions[1:])
    shifts = means - means[0]
    local = rng.normal(size=(2, N_LOCAL_TERMS))
    # the largest |d| over the corners of [-0.5, 0.5]^2 scales to local_amplitude_px
    corners = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    peak = max(np.linalg.norm(local @ _monomials(cx, cy)) for cx, cy in corners) or 1.0
    local *= local_amplitude_px / peak
    frame_profile = 0.5 * (profile[:-1] + profile[1:])
    frame_profile = (frame_profile - frame_profile[0]) / max(
        frame_profile[-1] - frame_profile[0], 1e-12
    )
    return MotionTruth(positions, shifts, local, frame_profile)


def _monomials(x_norm: np.ndarray | float, y_norm: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x_norm, dtype=np.float64)
    y = np.asarray(y_norm, dtype=np.float64)
    return np.stack([x, y, x * x, y * y, x * y])


def local_displacement_px(
    coefficients_px: np.ndarray,
    profile: np.ndarray,
    *,
    x_px: np.ndarray | float,
    y_px: np.ndarray | float,
    size_px: int,
    frame: int | np.ndarray,
) -> np.ndarray:
    """Local displacement ``[dx, dy]`` (pixels) at image positions and frame(s).

    Returns an array of shape ``(..., 2)`` broadcasting ``x_px``, ``y_px`` and ``frame``.
    """
    x, y, f = np.broadcast_arrays(
        np.asarray(x_px, dtype=np.float64),
        np.asarray(y_px, dtype=np.float64),
        np.asarray(frame),
    )
    terms = _monomials(x / size_px - 0.5, y / size_px - 0.5)  # (5, ...)
    g = np.asarray(profile)[f]
    displacement = np.einsum("cj,j...->...c", coefficients_px, terms)
    return displacement * g[..., None]
