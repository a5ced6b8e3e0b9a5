"""The sanity gate: every way an exposure's processing can silently go wrong, made loud.

Other tools' most common failure is a silent one: a blank frame averaged in, a drift read as 0
or -9999, a CTF fit of 40 um on an image whose rings say 1 um. The gate checks the raw frames,
the motion and the CTF against physical plausibility and the metadata, and gives each exposure
a status (``pass``, ``warn``, ``fail``) with one human-readable reason per finding. It judges
whether a result is *broken*, not whether an exposure is *good*: that is the causal model's job.

Pure functions on records and arrays; limits come from :class:`config.GateSettings`-like
objects (any object with the same attribute names).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from causalscope.models.frame_statistics import SATURATION_MIN_FRACTION, frame_statistics
from causalscope.models.records import (
    CtfRecord,
    FrameStatistics,
    GateFlag,
    GateStatus,
    MotionRecord,
)

__all__ = ["GateLimits", "blank_frames", "evaluate_gate", "frame_statistics", "gate_status"]


class GateLimits(Protocol):
    """The limits the gate reads (``config.processing.GateSettings`` satisfies it)."""

    @property
    def max_total_drift_px(self) -> float: ...
    @property
    def max_frame_shift_px(self) -> float: ...
    @property
    def max_ctf_fit_resolution_angstrom(self) -> float: ...
    @property
    def max_astigmatism_angstrom(self) -> float: ...
    @property
    def min_ctf_figure_of_merit(self) -> float: ...
    @property
    def dose_tolerance_fraction(self) -> float: ...
    @property
    def blank_frame_fraction(self) -> float: ...
    @property
    def min_total_dose_e_per_a2(self) -> float: ...
    @property
    def max_total_dose_e_per_a2(self) -> float: ...


def _frames_list(indices: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def blank_frames(stats: FrameStatistics, limits: GateLimits) -> list[int]:
    """Indices of frames with no counts, no variation, or a mean below
    ``limits.blank_frame_fraction`` of the median frame's."""
    means = np.asarray(stats.frame_means, dtype=np.float64)
    finite_means = means[np.isfinite(means)]
    median = float(np.median(finite_means)) if finite_means.size else 0.0
    floor = limits.blank_frame_fraction * median
    return [
        i
        for i, (m, s) in enumerate(zip(means, stats.frame_stds, strict=True))
        if not math.isfinite(m) or m <= 0 or s == 0 or m < floor
    ]


def _check_frames(stats: FrameStatistics, limits: GateLimits) -> list[GateFlag]:
    flags: list[GateFlag] = []
    bad = [i for i, n in enumerate(stats.nonfinite_counts) if n > 0]
    if bad:
        total = sum(stats.nonfinite_counts)
        flags.append(
            GateFlag(
                code="nonfinite_pixels",
                severity="fail",
                message=f"{total} NaN/Inf pixels in frame(s) {_frames_list(bad)}",
                value=float(total),
                limit=0.0,
            )
        )
    means = np.asarray(stats.frame_means, dtype=np.float64)
    blank = blank_frames(stats, limits)
    if blank:
        finite_means = means[np.isfinite(means)]
        median = float(np.median(finite_means)) if finite_means.size else 0.0
        worst = min(blank, key=lambda i: means[i] if math.isfinite(means[i]) else -1.0)
        flags.append(
            GateFlag(
                code="blank_frames",
                severity="fail",
                message=(
                    f"{len(blank)} of {stats.n_frames} frames are blank (frame(s) "
                    f"{_frames_list(blank)}; frame {worst} has mean {means[worst]:.4g} "
                    f"against a median of {median:.4g})"
                ),
                value=float(len(blank)),
                limit=0.0,
            )
        )
    clipped = [i for i, f in enumerate(stats.saturated_fractions) if f > 0]
    if clipped:
        worst_fraction = max(stats.saturated_fractions)
        flags.append(
            GateFlag(
                code="saturated_frames",
                severity="fail",
                message=(
                    f"{len(clipped)} frame(s) clipped at their maximum value (frame(s) "
                    f"{_frames_list(clipped)}; up to {100 * worst_fraction:.2g} % of pixels)"
                ),
                value=worst_fraction,
                limit=SATURATION_MIN_FRACTION,
            )
        )
    return flags


def _check_dose(
    measured: float | None, expected: float | None, limits: GateLimits
) -> list[GateFlag]:
    flags: list[GateFlag] = []
    if expected is None:
        flags.append(
            GateFlag(
                code="dose_unknown",
                severity="warn",
                message="no dose in the metadata: dose weighting used the dose measured "
                "from the counts"
                if measured is not None
                else "no dose in the metadata and none measurable: no dose weighting",
            )
        )
    dose = expected if expected is not None else measured
    if dose is not None and not (
        limits.min_total_dose_e_per_a2 <= dose <= limits.max_total_dose_e_per_a2
    ):
        flags.append(
            GateFlag(
                code="dose_implausible",
                severity="fail",
                message=(
                    f"total dose {dose:.4g} e/A^2 is outside the plausible range "
                    f"{limits.min_total_dose_e_per_a2:g}-{limits.max_total_dose_e_per_a2:g} e/A^2"
                ),
                value=dose,
                limit=limits.min_total_dose_e_per_a2
                if dose < limits.min_total_dose_e_per_a2
                else limits.max_total_dose_e_per_a2,
            )
        )
    if measured is not None and expected is not None and expected > 0:
        ratio = measured / expected
        if not math.isfinite(ratio) or abs(ratio - 1.0) > limits.dose_tolerance_fraction:
            flags.append(
                GateFlag(
                    code="dose_mismatch",
                    severity="fail",
                    message=(
                        f"the counts say {measured:.4g} e/A^2 but the metadata says "
                        f"{expected:.4g} e/A^2 (ratio {ratio:.3g}; allowed "
                        f"{1 - limits.dose_tolerance_fraction:.3g}-"
                        f"{1 + limits.dose_tolerance_fraction:.3g}): wrong pixel size, gain "
                        "or dose in the metadata"
                    ),
                    value=ratio,
                    limit=limits.dose_tolerance_fraction,
                )
            )
    return flags


def _check_motion(motion: MotionRecord, limits: GateLimits) -> list[GateFlag]:
    flags: list[GateFlag] = []
    shifts = np.asarray(motion.shifts_px, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(shifts)):
        frames = sorted({int(i) for i in np.nonzero(~np.isfinite(shifts))[0]})
        return [
            GateFlag(
                code="drift_nonfinite",
                severity="fail",
                message=f"alignment returned NaN/Inf shifts for frame(s) {_frames_list(frames)}",
            )
        ]
    if len(shifts) > 1 and not np.any(shifts):
        flags.append(
            GateFlag(
                code="drift_zero",
                severity="fail",
                message=(
                    f"every one of {len(shifts)} frame shifts is exactly 0 px: the alignment "
                    "found nothing to align (blank frames, or a failed correlation)"
                ),
                value=0.0,
            )
        )
    if motion.total_drift_px > limits.max_total_drift_px:
        flags.append(
            GateFlag(
                code="drift_total_implausible",
                severity="fail",
                message=(
                    f"total drift {motion.total_drift_px:.4g} px exceeds the plausible "
                    f"{limits.max_total_drift_px:g} px"
                ),
                value=motion.total_drift_px,
                limit=limits.max_total_drift_px,
            )
        )
    if motion.max_frame_shift_px > limits.max_frame_shift_px:
        step = np.linalg.norm(np.diff(shifts, axis=0), axis=1)
        frame = int(np.argmax(step)) + 1 if len(step) else 0
        flags.append(
            GateFlag(
                code="drift_jump",
                severity="fail",
                message=(
                    f"frame {frame} moved {motion.max_frame_shift_px:.4g} px from the frame "
                    f"before it (plausible: <= {limits.max_frame_shift_px:g} px)"
                ),
                value=motion.max_frame_shift_px,
                limit=limits.max_frame_shift_px,
            )
        )
    return flags


def _check_ctf(ctf: CtfRecord, pixel_size_angstrom: float, limits: GateLimits) -> list[GateFlag]:
    values = {
        "defocus U": ctf.defocus_u_angstrom,
        "defocus V": ctf.defocus_v_angstrom,
        "angle": ctf.defocus_angle_deg,
        "figure of merit": ctf.figure_of_merit,
    }
    if ctf.fit_resolution_angstrom is not None:
        values["fit resolution"] = ctf.fit_resolution_angstrom
    broken = [name for name, v in values.items() if not math.isfinite(v)]
    if broken:
        return [
            GateFlag(
                code="ctf_nonfinite",
                severity="fail",
                message=f"CTF fit returned non-finite {', '.join(broken)}",
            )
        ]
    flags = _check_ctf_fit(ctf, limits)
    flags += _check_ctf_resolution(ctf.fit_resolution_angstrom, pixel_size_angstrom, limits)
    astigmatism = abs(ctf.astigmatism_angstrom)
    if astigmatism > limits.max_astigmatism_angstrom:
        flags.append(
            GateFlag(
                code="ctf_astigmatism_implausible",
                severity="fail",
                message=(
                    f"astigmatism {astigmatism:.4g} A exceeds the plausible "
                    f"{limits.max_astigmatism_angstrom:g} A"
                ),
                value=astigmatism,
                limit=limits.max_astigmatism_angstrom,
            )
        )
    if ctf.supported:
        flags.extend(
            GateFlag(code="ctf_warning", severity="warn", message=text) for text in ctf.warnings
        )
    return flags


def _check_ctf_fit(ctf: CtfRecord, limits: GateLimits) -> list[GateFlag]:
    """Unsupported fits, fits at the edge of the search range, and poor figures of merit."""
    flags: list[GateFlag] = []
    defocus_um = ctf.defocus_angstrom / 1e4
    if not ctf.supported:
        why = "; ".join(ctf.warnings) or "the spectrum does not support it"
        flags.append(
            GateFlag(
                code="ctf_unsupported",
                severity="fail",
                message=f"CTF fit at {defocus_um:.3g} um is not supported: {why}",
                value=defocus_um,
            )
        )
    if ctf.at_search_edge:
        flags.append(
            GateFlag(
                code="ctf_search_edge",
                severity="fail",
                message=(
                    f"CTF fit at {defocus_um:.3g} um lies at the edge of the search range "
                    f"{ctf.search_defocus_min_um:g}-{ctf.search_defocus_max_um:g} um: the true "
                    "defocus is probably outside it"
                ),
                value=defocus_um,
                limit=ctf.search_defocus_max_um
                if abs(defocus_um - ctf.search_defocus_max_um)
                < abs(defocus_um - ctf.search_defocus_min_um)
                else ctf.search_defocus_min_um,
            )
        )
    if ctf.figure_of_merit < limits.min_ctf_figure_of_merit:
        flags.append(
            GateFlag(
                code="ctf_poor_fit",
                severity="fail",
                message=(
                    f"CTF figure of merit {ctf.figure_of_merit:.3g} is below "
                    f"{limits.min_ctf_figure_of_merit:g}: the rings do not match the model"
                ),
                value=ctf.figure_of_merit,
                limit=limits.min_ctf_figure_of_merit,
            )
        )
    return flags


def _check_ctf_resolution(
    fit_resolution_angstrom: float | None, pixel_size_angstrom: float, limits: GateLimits
) -> list[GateFlag]:
    """No fit resolution, one beyond Nyquist, or one worse than the limit."""
    flags: list[GateFlag] = []
    nyquist = 2.0 * pixel_size_angstrom
    if fit_resolution_angstrom is None:
        flags.append(
            GateFlag(
                code="ctf_resolution_poor",
                severity="fail",
                message="the rings support the CTF fit at no resolution at all",
            )
        )
    elif fit_resolution_angstrom < nyquist * 0.999:
        flags.append(
            GateFlag(
                code="ctf_resolution_beyond_nyquist",
                severity="fail",
                message=(
                    f"CTF fit resolution {fit_resolution_angstrom:.3g} A is beyond Nyquist "
                    f"({nyquist:.3g} A at {pixel_size_angstrom:g} A/px): impossible"
                ),
                value=fit_resolution_angstrom,
                limit=nyquist,
            )
        )
    elif fit_resolution_angstrom > limits.max_ctf_fit_resolution_angstrom:
        flags.append(
            GateFlag(
                code="ctf_resolution_poor",
                severity="fail",
                message=(
                    f"CTF fit resolution {fit_resolution_angstrom:.3g} A is worse than "
                    f"{limits.max_ctf_fit_resolution_angstrom:g} A"
                ),
                value=fit_resolution_angstrom,
                limit=limits.max_ctf_fit_resolution_angstrom,
            )
        )
    return flags


def evaluate_gate(
    *,
    frames: FrameStatistics | None,
    motion: MotionRecord | None,
    ctf: CtfRecord | None,
    pixel_size_angstrom: float,
    metadata_dose_e_per_a2: float | None,
    limits: GateLimits,
) -> list[GateFlag]:
    """Every finding about one exposure, failures and warnings, in the order of processing.

    Parameters
    ----------
    frames
        Statistics of the raw frames (:func:`frame_statistics`), or None if not read.
    motion, ctf
        The stage results, or None where a stage did not run (the caller flags why).
    pixel_size_angstrom
        Of the micrograph the CTF was fitted on (for the Nyquist check).
    metadata_dose_e_per_a2
        The total dose the metadata states, or None.
    limits
        The gate's limits (``settings.processing.gate``).
    """
    if pixel_size_angstrom <= 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")
    flags: list[GateFlag] = []
    if frames is not None:
        flags += _check_frames(frames, limits)
    measured = motion.measured_dose_e_per_a2 if motion is not None else None
    flags += _check_dose(measured, metadata_dose_e_per_a2, limits)
    if motion is not None:
        flags += _check_motion(motion, limits)
    if ctf is not None:
        flags += _check_ctf(ctf, pixel_size_angstrom, limits)
    return flags


def gate_status(flags: list[GateFlag]) -> GateStatus:
    """``fail`` if any finding fails, ``warn`` if any warns, else ``pass``."""
    if any(f.severity == "fail" for f in flags):
        return "fail"
    if flags:
        return "warn"
    return "pass"
