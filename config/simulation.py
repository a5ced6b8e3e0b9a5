"""Simulator settings: how a simulated session draws each exposure (the causal graph's effect
sizes, see :mod:`models.simulate.session`), and what each movie looks like.

The microscope (voltage, Cs, amplitude contrast, pixel size, energy filter) comes from the
``microscope`` section; these fields only describe the session and the sample.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SimulationSettings"]


class SimulationSettings(BaseModel):
    """A simulated session: grid squares, holes, shots, and how factors depend on each other."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    size_px: int = Field(1024, ge=64, le=8192, description="Movie width and height in pixels.")
    n_frames: int = Field(20, ge=1, le=2000, description="Frames (fractions) per movie.")
    dose_e_per_a2: float = Field(
        40.0, gt=0, le=500, description="Nominal total dose per exposure, e/A^2."
    )
    dose_jitter_fraction: float = Field(
        0.03, ge=0, le=0.5, description="Relative scatter of the delivered dose (beam current)."
    )
    structure: str = Field(
        "phantom",
        description="Particle source: 'phantom' (built-in apoferritin-like shell) or a path "
        "to a PDB/mmCIF model or an MRC map.",
    )
    holes_per_square: int = Field(6, ge=1, description="Foil holes visited per grid square.")
    exposures_per_hole: int = Field(
        4, ge=1, le=16, description="Exposures per hole (beam-image shift multi-shot)."
    )
    beam_shift_um: float = Field(
        0.8, ge=0, le=10, description="Image-shift offset of the multi-shot pattern, um."
    )
    ice_median_nm: float = Field(
        35.0, gt=0, le=500, description="Median ice thickness over the grid, nm."
    )
    ice_square_log_sd: float = Field(
        0.35, ge=0, le=2, description="Log-normal scatter of the mean ice between squares."
    )
    ice_hole_log_sd: float = Field(
        0.12, ge=0, le=2, description="Log-normal scatter of the ice between holes of a square."
    )
    defocus_targets_um: list[float] = Field(
        default_factory=lambda: [0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0],
        min_length=1,
        description="Target defocus list cycled hole by hole (positive underfocus), um.",
    )
    defocus_error_um: float = Field(
        0.04, ge=0, le=2, description="Autofocus error: scatter of actual around target, um."
    )
    astigmatism_start_angstrom: float = Field(
        120.0, ge=0, le=5000, description="Astigmatism (dU - dV) at the start, A."
    )
    astigmatism_creep_angstrom: float = Field(
        1.5, ge=-100, le=100, description="Astigmatism added per exposure (lens drift), A."
    )
    astigmatism_noise_angstrom: float = Field(
        25.0, ge=0, le=2000, description="Scatter of astigmatism between exposures, A."
    )
    astigmatism_angle_walk_deg: float = Field(
        2.0, ge=0, le=90, description="Random-walk step of the astigmatism angle, degrees."
    )
    drift_median_px: float = Field(
        5.0, ge=0, le=500, description="Median total beam-induced drift per movie, px."
    )
    drift_after_stage_move_px: float = Field(
        15.0, ge=0, le=500, description="Extra drift on the first exposure after a stage move, px."
    )
    drift_decay_frames: float = Field(
        4.0, gt=0, le=1000, description="Time constant of the drift's decay, frames."
    )
    drift_jitter_px: float = Field(
        0.3, ge=0, le=50, description="Smooth random wander on top of the drift, px (rms)."
    )
    local_motion_px: float = Field(
        1.0, ge=0, le=50, description="Largest local (non-rigid) displacement at the edge, px."
    )
    beam_tilt_offset_mrad: tuple[float, float] = Field(
        (0.1, -0.05), description="Residual beam tilt of the coma-free alignment, mrad."
    )
    beam_tilt_per_shift_mrad_per_um: float = Field(
        0.25, ge=0, le=10, description="Beam tilt induced per um of image shift, mrad/um."
    )
    particles_per_um2: float = Field(
        3000.0, ge=0, le=50_000, description="Particle density in ice thick enough for them."
    )
    broken_fraction: float = Field(
        0.1, ge=0, le=1, description="Mean fraction of broken (partial) particles."
    )
    aggregate_fraction: float = Field(
        0.03, ge=0, le=1, description="Mean fraction of aggregates (clumps of particles)."
    )
    bfactor_base_angstrom2: float = Field(
        20.0, ge=0, le=1000, description="Envelope B-factor of a still, thin specimen, A^2."
    )
    bfactor_per_drift_px: float = Field(
        0.8,
        ge=0,
        le=100,
        description="Extra B-factor per px of total drift (blur that motion correction cannot "
        "undo), A^2/px.",
    )
    bfactor_per_ice_nm: float = Field(
        0.2, ge=0, le=100, description="Extra B-factor per nm of ice (charging), A^2/nm."
    )
    phase_shift_deg: float = Field(
        0.0, ge=0, le=180, description="Phase-plate phase shift, degrees (0: no phase plate)."
    )
