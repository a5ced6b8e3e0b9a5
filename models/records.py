"""Typed records that cross package boundaries (pydantic models, no torch).

Field names follow the truth file's names and carry their units (see :mod:`models.units`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AcquisitionMetadata",
    "CausalInputs",
    "CtfRecord",
    "ExposureRecord",
    "FrameStatistics",
    "GateFlag",
    "MotionRecord",
    "PickingRecord",
    "RestorationRecord",
]


class AcquisitionMetadata(BaseModel):
    """What the microscope software wrote beside one movie (EPU XML or a SerialEM .mdoc).

    Every value is optional because real files omit fields; a consumer falls back to the
    configured microscope where a value is missing. Defocus is positive for underfocus (EPU
    writes the applied defocus as a negative number of metres; the parser converts).
    """

    model_config = ConfigDict(frozen=True)

    source_path: str = Field(description="The metadata file this was read from.")
    source_format: Literal["epu", "mdoc"]
    movie_name: str | None = Field(None, description="File name of the movie it describes.")
    pixel_size_angstrom: float | None = None
    voltage_kv: float | None = None
    spherical_aberration_mm: float | None = None
    dose_e_per_a2: float | None = Field(None, description="Total dose of the exposure.")
    dose_rate_e_per_px_per_s: float | None = None
    n_frames: int | None = None
    exposure_time_s: float | None = None
    target_defocus_um: float | None = Field(
        None, description="Nominal defocus the operator asked for, positive underfocus."
    )
    beam_shift: tuple[float, float] | None = Field(
        None, description="Beam/image shift in the software's own units (EPU: BeamShift)."
    )
    image_shift: tuple[float, float] | None = None
    stage_position_um: tuple[float, float, float] | None = None
    stage_tilt_deg: float | None = None
    magnification: float | None = None
    spot_size: int | None = None
    camera: str | None = None
    microscope: str | None = None
    timestamp: datetime | None = None
    grid_square: str | None = None
    foil_hole: str | None = None
    extra: dict[str, str] = Field(default_factory=dict, description="Other values, verbatim.")


Severity = Literal["fail", "warn"]
GateStatus = Literal["pass", "warn", "fail"]


class GateFlag(BaseModel):
    """One finding of the sanity gate: what was seen, against which limit, and why it matters."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="Stable machine-readable name, e.g. 'blank_frames'.")
    severity: Severity
    message: str = Field(description="Human-readable reason, naming the values seen.")
    value: float | None = Field(None, description="The offending value, where there is one.")
    limit: float | None = Field(None, description="The limit it was held against.")


class FrameStatistics(BaseModel):
    """Per-frame statistics of a raw movie, taken before any correction."""

    model_config = ConfigDict(frozen=True)

    n_frames: int
    height_px: int
    width_px: int
    dtype: str
    frame_means: list[float] = Field(description="Mean value of each raw frame (counts).")
    frame_stds: list[float] = Field(description="Standard deviation of each raw frame.")
    nonfinite_counts: list[int] = Field(description="NaN or Inf pixels in each frame.")
    saturated_fractions: list[float] = Field(
        description="Fraction of each frame's pixels stuck at its maximum beyond Poisson chance."
    )


class MotionRecord(BaseModel):
    """Motion-correction result of one exposure (RELION's accumulated motion in Angstrom)."""

    model_config = ConfigDict(frozen=True)

    shifts_px: list[list[float]] = Field(
        description="[[x, y]] per frame: specimen position relative to frame 0 (truth's name)."
    )
    local_motion_rms_px: float | None = Field(
        None, description="RMS of the fitted local displacement over the patch grid and frames."
    )
    patches: tuple[int, int] | None = None
    accumulated_motion_total_angstrom: float
    accumulated_motion_early_angstrom: float
    accumulated_motion_late_angstrom: float
    total_drift_px: float = Field(description="Path length of the global trajectory.")
    max_frame_shift_px: float = Field(description="Largest shift between consecutive frames.")
    measured_dose_e_per_a2: float | None = Field(
        None, description="Dose measured from the counts (counting detectors)."
    )
    n_defect_pixels: int = 0
    n_hot_pixels: int = 0
    iterations: int = 0


class CtfRecord(BaseModel):
    """CTF estimate of one exposure, with 1-sigma uncertainties (truth's field names)."""

    model_config = ConfigDict(frozen=True)

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    defocus_angle_deg: float
    phase_shift_deg: float = 0.0
    fit_resolution_angstrom: float | None = Field(
        description="Resolution up to which the rings support the fit; None where none does."
    )
    figure_of_merit: float
    ice_thickness_nm: float | None = None
    ice_thickness_rings_nm: float | None = None
    ice_thickness_ice_ring_nm: float | None = None
    defocus_sigma_angstrom: float | None = None
    astigmatism_sigma_angstrom: float | None = None
    angle_sigma_deg: float | None = None
    phase_shift_sigma_deg: float | None = None
    ice_thickness_sigma_nm: float | None = None
    search_defocus_min_um: float
    search_defocus_max_um: float
    at_search_edge: bool = False
    supported: bool = True
    warnings: list[str] = Field(default_factory=list)

    @property
    def defocus_angstrom(self) -> float:
        """Mean defocus (positive underfocus)."""
        return 0.5 * (self.defocus_u_angstrom + self.defocus_v_angstrom)

    @property
    def astigmatism_angstrom(self) -> float:
        """Defocus U minus defocus V."""
        return self.defocus_u_angstrom - self.defocus_v_angstrom


class PickingRecord(BaseModel):
    """Particles picked on the restored (Wiener-filtered) micrograph."""

    model_config = ConfigDict(frozen=True)

    n_particles: int
    particle_diameter_angstrom: float
    picker: Literal["blob", "template", "learned"] = "blob"
    mean_score: float | None = Field(None, description="Mean score of the picks kept.")
    threshold: float | None = Field(
        None, description="The learned picker's cut on the probability (None for the others)."
    )
    box_px: int | None = Field(None, description="Box of the extracted particles, if any.")
    picks_xy_px: list[list[float]] = Field(
        default_factory=list, description="[[x, y], ...] of each pick, pixels of the micrograph."
    )
    scores: list[float] = Field(default_factory=list, description="Score of each pick.")
    excluded_fractions: dict[str, float] | None = Field(
        None,
        description="Area fraction not picked in, per reason (dense, thin, border); None when "
        "no area was excluded by design (exclusion off).",
    )
    picks_excluded: int = Field(
        0, description="Picks dropped for lying in an excluded area or on dense matter."
    )
    fine_tuned: bool = Field(
        False, description="Picked by the session's fine-tuned learned picker (not the shipped)."
    )


class RestorationRecord(BaseModel):
    """Which spectral SNR the Wiener filter used: the exposure's own fit, or that fit's B pulled
    into the range the causal model's envelope prior allows for the exposure's factors."""

    model_config = ConfigDict(frozen=True)

    ssnr_source: Literal["fit", "causal_prior"]
    bfactor_fit_angstrom2: float = Field(
        description="B of the SSNR fitted to the exposure's own spectrum (power exp(-B k^2/2))."
    )
    bfactor_used_angstrom2: float = Field(description="B of the SSNR the filter used.")
    prior_bfactor_low_angstrom2: float | None = Field(
        None, description="Lowest B the causal model allowed for these factors, when it had one."
    )
    prior_bfactor_high_angstrom2: float | None = Field(
        None, description="Highest B the causal model allowed for these factors."
    )
    prior_n_exposures: int | None = Field(
        None, description="Exposures the model had learned from when it sent the prior."
    )


class TriageRecord(BaseModel):
    """The micrograph's class from the image alone (:mod:`models.triage`): ``label`` with
    the probability of each class and the reason."""

    model_config = ConfigDict(frozen=True)

    label: Literal["empty", "ice_only", "crystalline_ice", "contaminated", "usable"]
    p_usable: float = Field(description="Probability that the micrograph is usable.")
    scores: dict[str, float] = Field(default_factory=dict, description="Probability per class.")
    reason: str = ""


class ReproRecord(BaseModel):
    """Delta-Repro: the CTF and picking refitted on the even and odd half sums, and how far
    the halves differ in units of their uncertainty (:mod:`models.scoring.repro`)."""

    model_config = ConfigDict(frozen=True)

    defocus_even_angstrom: float | None = None
    defocus_odd_angstrom: float | None = None
    fit_resolution_even_angstrom: float | None = None
    fit_resolution_odd_angstrom: float | None = None
    particles_even: int | None = None
    particles_odd: int | None = None
    z_defocus: float | None = None
    z_fit_resolution: float | None = None
    z_particles: float | None = None
    delta_repro: float = Field(description="exp(-rms(z) / 2), in (0, 1]: 1 = identical halves.")
    drift_difference_angstrom: float | None = Field(
        default=None,
        description="RMS distance between the even and the odd frames' own trajectories, A.",
    )
    z_drift: float | None = None
    defocus_noise_angstrom: float | None = Field(
        default=None,
        description="Mean defocus of the CTF sum fitted again with as much noise again added, A.",
    )
    z_noise: float | None = None


class CausalInputs(BaseModel):
    """One exposure's factors and outcomes, as the causal model reads them.

    ``beam_tilt_mrad`` is estimated from the image shift (coma grows linearly with it):
    ``processing.causal.beam_tilt_mrad_per_um`` times ``|image_shift|``.
    """

    model_config = ConfigDict(frozen=True)

    ice_thickness_nm: float
    dose_e_per_a2: float
    total_drift_px: float
    defocus_um: float
    astigmatism_angstrom: float
    image_shift_um: float | None = None
    beam_tilt_mrad: float = 0.0
    n_particles: int = 0
    fit_resolution_angstrom: float = Field(description="The outcome: CTF fit resolution.")
    ssnr_bfactor_angstrom2: float | None = Field(
        None, description="The exposure's own spectral-SNR B (the envelope model's outcome)."
    )


class ExposureRecord(BaseModel):
    """Everything one exposure's processing produced: the typed result of an ExposureWorker."""

    model_config = ConfigDict(frozen=True)

    exposure_id: str = Field(description="The movie's file stem; unique within a session.")
    movie_path: str
    status: GateStatus = Field(description="pass, warn (usable, with reasons) or fail.")
    flags: list[GateFlag] = Field(default_factory=list)
    pixel_size_angstrom: float | None = None
    voltage_kv: float | None = None
    spherical_aberration_mm: float | None = None
    amplitude_contrast: float | None = None
    dose_e_per_a2: float | None = Field(None, description="Total dose used for dose weighting.")
    n_frames: int | None = None
    metadata: AcquisitionMetadata | None = None
    frames: FrameStatistics | None = None
    motion: MotionRecord | None = None
    ctf: CtfRecord | None = None
    picking: PickingRecord | None = None
    restoration: RestorationRecord | None = None
    repro: ReproRecord | None = Field(
        None, description="Delta-Repro's refits on the half sums (None when not run)."
    )
    triage: TriageRecord | None = Field(
        None, description="The micrograph's triage from the image alone (None when not run)."
    )
    causal: CausalInputs | None = Field(
        None, description="Factors and outcome for the causal model (usable exposures only)."
    )
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Written files by kind (aligned_sum, ...)."
    )
    timings_s: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")
    device: str | None = None

    @property
    def reasons(self) -> list[str]:
        """The gate's messages, failures first."""
        ordered = sorted(self.flags, key=lambda f: f.severity != "fail")
        return [f"{f.severity}: {f.message}" for f in ordered]
