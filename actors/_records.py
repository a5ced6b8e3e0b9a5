"""The worker's motion record, built from a motion correction."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from causalscope.models.records import MotionRecord

if TYPE_CHECKING:
    from causalscope.config import DetectorSettings, MotionSettings
    from causalscope.models.motion import MotionCorrection

__all__ = ["build_motion_record", "local_motion_rms", "used_dose"]


def build_motion_record(
    correction: MotionCorrection,
    *,
    detector: DetectorSettings,
    motion: MotionSettings,
    pixel_size_angstrom: float,
) -> MotionRecord:
    """The record of a motion correction: trajectory, accumulated motion as RELION defines it,
    drift, local motion RMS over the patch centres and the dose measured from counts."""
    shifts = np.asarray(correction.shifts_px, dtype=np.float64)
    steps = np.linalg.norm(np.diff(shifts, axis=0), axis=1) if len(shifts) > 1 else np.zeros(1)
    means = np.asarray(correction.frame_means, dtype=np.float64)
    measured = None
    if detector.kind in ("counting", "eer"):
        per_electron = detector.counts_per_electron
        measured = float(means.sum()) / per_electron / pixel_size_angstrom**2
    local_rms = None
    patches = None
    if correction.local_model is not None:
        patches = (motion.patches_x, motion.patches_y)
        local_rms = local_motion_rms(correction, shifts.shape[0])
    acc = correction.accumulated
    return MotionRecord(
        shifts_px=np.round(shifts, 4).tolist(),
        local_motion_rms_px=local_rms,
        patches=patches,
        accumulated_motion_total_angstrom=float(acc.total_angstrom),
        accumulated_motion_early_angstrom=float(acc.early_angstrom),
        accumulated_motion_late_angstrom=float(acc.late_angstrom),
        total_drift_px=float(steps.sum()),
        max_frame_shift_px=float(steps.max()) if steps.size else 0.0,
        measured_dose_e_per_a2=measured,
        n_defect_pixels=int(correction.defect_mask.sum())
        if correction.defect_mask is not None
        else 0,
        n_hot_pixels=int(correction.n_hot_pixels),
        iterations=int(correction.iterations_used),
    )


def local_motion_rms(correction: MotionCorrection, n_frames: int) -> float | None:
    """RMS of the local model's displacement over the patch centres and all frames."""
    model = correction.local_model
    positions = correction.patch_positions_px
    if model is None or positions is None or len(positions) == 0:
        return None
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    frames = np.arange(n_frames)
    d = model.displacement_px(pos[:, None, 0], pos[:, None, 1], frames[None, :])
    value = float(np.sqrt(np.mean(np.sum(np.asarray(d) ** 2, axis=-1))))
    return value if math.isfinite(value) else None


def used_dose(dose: float | None, motion: MotionRecord | None) -> float | None:
    """The metadata's dose, else the one measured from the counts."""
    if dose is None and motion is not None:
        return motion.measured_dose_e_per_a2
    return dose
