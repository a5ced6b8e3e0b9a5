"""Typed exposure records built directly (no torch), and a store on random local ports."""

from __future__ import annotations

from causalscope.models.records import CtfRecord, ExposureRecord, GateFlag, GateStatus, MotionRecord


def make_record(
    exposure_id: str,
    *,
    status: GateStatus = "pass",
    defocus_u_angstrom: float = 15_000.0,
    defocus_v_angstrom: float = 14_000.0,
    fit_resolution_angstrom: float | None = 4.0,
    ice_thickness_nm: float | None = 40.0,
    total_drift_px: float = 3.0,
    flags: list[GateFlag] | None = None,
    n_frames: int = 4,
    phase_shift_deg: float = 0.0,
    with_ctf: bool = True,
    outputs: dict[str, str] | None = None,
) -> ExposureRecord:
    """A complete record of the kind an ExposureWorker returns."""
    shifts = [[0.0, 0.0]] + [[0.5 * i, -0.25 * i] for i in range(1, n_frames)]
    motion = MotionRecord(
        shifts_px=shifts,
        local_motion_rms_px=0.3,
        patches=(5, 4),
        accumulated_motion_total_angstrom=2.5,
        accumulated_motion_early_angstrom=1.5,
        accumulated_motion_late_angstrom=1.0,
        total_drift_px=total_drift_px,
        max_frame_shift_px=0.56,
        measured_dose_e_per_a2=40.0,
        n_hot_pixels=3,
        iterations=5,
    )
    ctf = CtfRecord(
        defocus_u_angstrom=defocus_u_angstrom,
        defocus_v_angstrom=defocus_v_angstrom,
        defocus_angle_deg=33.0,
        phase_shift_deg=phase_shift_deg,
        fit_resolution_angstrom=fit_resolution_angstrom,
        figure_of_merit=0.25,
        ice_thickness_nm=ice_thickness_nm,
        defocus_sigma_angstrom=20.0,
        search_defocus_min_um=0.5,
        search_defocus_max_um=5.0,
    )
    if outputs is None:
        outputs = {
            "aligned_sum": f"out/micrographs/{exposure_id}.mrc",
            "dose_weighted_sum": f"out/micrographs/{exposure_id}_DW.mrc",
            "trajectory": f"out/motion/{exposure_id}.star",
        }
    return ExposureRecord(
        exposure_id=exposure_id,
        movie_path=f"movies/{exposure_id}.tiff",
        status=status,
        flags=flags or [],
        pixel_size_angstrom=0.83,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
        dose_e_per_a2=40.0,
        n_frames=n_frames,
        motion=motion,
        ctf=ctf if with_ctf else None,
        outputs=outputs,
        timings_s={"motion": 0.5, "ctf": 0.25},
        device="cpu",
    )


def fail_flag(code: str, value: float | None = None, limit: float | None = None) -> GateFlag:
    """A failing gate finding."""
    return GateFlag(code=code, severity="fail", message=f"{code} seen", value=value, limit=limit)


def warn_flag(code: str) -> GateFlag:
    """A warning gate finding."""
    return GateFlag(code=code, severity="warn", message=f"{code} seen")
