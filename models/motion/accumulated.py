"""Accumulated motion as RELION reports it (rlnAccumMotionTotal / Early / Late).

RELION (``MotioncorrRunner::generateLogFilePDFAndWriteStarFiles``) walks frames ``i = 1..F``
(1-based), adds ``|s_i - s_{i-1}|`` for ``i >= 2`` to the total, and to "early" when ``i <=
(4 - pre_exposure) / dose_per_frame`` (4 e/A^2 being ``dose_motionstats_cutoff``), else to
"late"; so total = early + late and the step *into* frame ``i`` counts as early when frame
``i``'s index, not its accumulated dose, is below the cutoff.

Units: RELION sums the shifts as stored in its STAR files, i.e. in movie **pixels**, although
the labels are documented as Angstrom: on the tutorial movies (0.885 A/px) its values equal
ours divided by the pixel size to 1e-6. We report true Angstrom (pixels x pixel size); divide by
the pixel size to reproduce RELION's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AccumulatedMotion", "accumulated_motion"]


@dataclass(frozen=True)
class AccumulatedMotion:
    """Path length of the global trajectory, Angstrom."""

    total_angstrom: float
    early_angstrom: float
    late_angstrom: float


def accumulated_motion(
    shifts_px: np.ndarray,
    *,
    pixel_size_angstrom: float,
    dose_per_frame_e_per_a2: float,
    pre_exposure_e_per_a2: float = 0.0,
    early_dose_e_per_a2: float = 4.0,
) -> AccumulatedMotion:
    """RELION's accumulated motion of a trajectory ``(F, 2)`` [x, y] in pixels."""
    shifts = np.asarray(shifts_px, dtype=np.float64)
    if shifts.ndim != 2 or shifts.shape[1] != 2:
        raise ValueError(f"shifts_px must be (F, 2), got shape {shifts.shape}")
    if pixel_size_angstrom <= 0 or dose_per_frame_e_per_a2 <= 0:
        raise ValueError(
            "pixel_size_angstrom and dose_per_frame_e_per_a2 must be positive, got "
            f"{pixel_size_angstrom} and {dose_per_frame_e_per_a2}"
        )
    cutoff_frame = (early_dose_e_per_a2 - pre_exposure_e_per_a2) / dose_per_frame_e_per_a2
    steps = np.linalg.norm(np.diff(shifts, axis=0), axis=1) * pixel_size_angstrom
    frame_numbers = np.arange(2, shifts.shape[0] + 1)  # 1-based index of the later frame
    early = steps[frame_numbers <= cutoff_frame].sum()
    late = steps[frame_numbers > cutoff_frame].sum()
    return AccumulatedMotion(float(early + late), float(early), float(late))
