"""The measured facts an exposure's scores read, taken from its :class:`ExposureRecord`."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from causalscope.models.records import ExposureRecord
from causalscope.models.scoring.obligations import ExposureFacts

__all__ = ["closest_pair_px", "exposure_facts", "nearest_other_px"]


def nearest_other_px(xy_px: np.ndarray) -> np.ndarray:
    """``(n,)`` distance from each of the points ``(n, 2)`` to the nearest other one (empty
    for fewer than two points)."""
    points = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
    if len(points) < 2:
        return np.zeros(0)
    distances, _ = cKDTree(points).query(points, k=2)
    return np.asarray(distances[:, 1])


def closest_pair_px(xy_px: np.ndarray) -> float | None:
    """Smallest distance between two of the points ``(n, 2)`` (``None`` for fewer than two)."""
    distances = nearest_other_px(xy_px)
    return float(distances.min()) if distances.size else None


def exposure_facts(record: ExposureRecord) -> ExposureFacts | None:
    """The facts of ``record`` (``None`` when it has no pixel size: nothing can be stated)."""
    apix = record.pixel_size_angstrom
    if apix is None:
        return None
    ctf, picking, motion = record.ctf, record.picking, record.motion
    meta = record.metadata
    closest = None
    if picking is not None and picking.picks_xy_px:
        pair = closest_pair_px(np.asarray(picking.picks_xy_px))
        closest = None if pair is None else pair * apix
    area = None
    if record.frames is not None:
        area = record.frames.height_px * record.frames.width_px * apix * apix
    return ExposureFacts(
        exposure_id=record.exposure_id,
        pixel_size_angstrom=apix,
        fit_resolution_angstrom=None if ctf is None else ctf.fit_resolution_angstrom,
        ice_thickness_nm=None if ctf is None else ctf.ice_thickness_nm,
        ice_thickness_sigma_nm=(ctf.ice_thickness_sigma_nm or 0.0) if ctf is not None else 0.0,
        particle_diameter_angstrom=None if picking is None else picking.particle_diameter_angstrom,
        n_particles=0 if picking is None else picking.n_particles,
        area_angstrom2=area,
        closest_picks_angstrom=closest,
        metadata_dose_e_per_a2=None if meta is None else meta.dose_e_per_a2,
        used_dose_e_per_a2=record.dose_e_per_a2,
        measured_dose_e_per_a2=None if motion is None else motion.measured_dose_e_per_a2,
        total_drift_angstrom=None if motion is None else motion.total_drift_px * apix,
        exposure_time_s=None if meta is None else meta.exposure_time_s,
    )
