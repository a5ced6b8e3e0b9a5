"""The sanity gate: every failure mode is produced here and reported with its reason."""

from __future__ import annotations

import numpy as np
import pytest

from causalscope.config.processing import GateSettings
from causalscope.models.gate import evaluate_gate, frame_statistics, gate_status
from causalscope.models.records import CtfRecord, MotionRecord

LIMITS = GateSettings()


def _frames(seed: int = 0, n: int = 8, size: int = 128, mean: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(mean, size=(n, size, size)).astype(np.uint8)


def _motion(shifts: list[list[float]] | None = None, dose: float | None = 40.0) -> MotionRecord:
    shifts = shifts if shifts is not None else [[0.4 * i, -0.2 * i] for i in range(8)]
    arr = np.asarray(shifts, dtype=np.float64)
    steps = np.linalg.norm(np.diff(arr, axis=0), axis=1)
    return MotionRecord(
        shifts_px=shifts,
        accumulated_motion_total_angstrom=float(steps.sum()),
        accumulated_motion_early_angstrom=0.0,
        accumulated_motion_late_angstrom=float(steps.sum()),
        total_drift_px=float(steps.sum()) if np.all(np.isfinite(steps)) else float("nan"),
        max_frame_shift_px=float(steps.max()) if np.all(np.isfinite(steps)) else float("nan"),
        measured_dose_e_per_a2=dose,
    )


def _ctf(**changes: object) -> CtfRecord:
    values: dict[str, object] = {
        "defocus_u_angstrom": 15_200.0,
        "defocus_v_angstrom": 14_800.0,
        "defocus_angle_deg": 30.0,
        "fit_resolution_angstrom": 4.5,
        "figure_of_merit": 0.3,
        "ice_thickness_nm": 40.0,
        "search_defocus_min_um": 0.2,
        "search_defocus_max_um": 5.0,
    }
    values.update(changes)
    return CtfRecord(**values)  # type: ignore[arg-type]


def _gate(**kwargs: object) -> list:
    args: dict[str, object] = {
        "frames": frame_statistics(_frames()),
        "motion": _motion(),
        "ctf": _ctf(),
        "pixel_size_angstrom": 1.0,
        "metadata_dose_e_per_a2": 40.0,
        "limits": LIMITS,
    }
    args.update(kwargs)
    return evaluate_gate(**args)  # type: ignore[arg-type]


def _codes(flags: list) -> set[str]:
    return {f.code for f in flags}


def test_clean_exposure_passes() -> None:
    flags = _gate()
    assert flags == []
    assert gate_status(flags) == "pass"


def test_nan_and_inf_pixels_fail_naming_frames() -> None:
    frames = _frames().astype(np.float32)
    frames[3, 5, 5] = np.nan
    frames[6, 0, 0] = np.inf
    flags = _gate(frames=frame_statistics(frames))
    flag = next(f for f in flags if f.code == "nonfinite_pixels")
    assert flag.severity == "fail"
    assert flag.value == 2
    assert "frame(s) 3, 6" in flag.message


def test_blank_frame_fails_with_its_index_and_mean() -> None:
    frames = _frames()
    frames[4] = 0
    stats = frame_statistics(frames)
    flags = _gate(frames=stats)
    flag = next(f for f in flags if f.code == "blank_frames")
    assert flag.severity == "fail"
    assert "frame(s) 4" in flag.message and "mean 0" in flag.message
    assert gate_status(flags) == "fail"


def test_dim_frame_below_fraction_of_median_is_blank() -> None:
    frames = _frames(mean=4.0)
    frames[2] = _frames(seed=9, mean=0.1)[0]  # 2.5 % of the others' dose
    assert "blank_frames" in _codes(_gate(frames=frame_statistics(frames)))


def test_clipped_frame_is_saturated() -> None:
    frames = _frames()
    frames[1, :40, :] = 255  # a quarter of the frame stuck at the uint8 ceiling
    stats = frame_statistics(frames)
    assert stats.saturated_fractions[1] == pytest.approx(40 / 128, rel=1e-6)
    assert stats.saturated_fractions[0] == 0.0
    flag = next(f for f in _gate(frames=stats) if f.code == "saturated_frames")
    assert "frame(s) 1" in flag.message


def test_sparse_counting_frames_are_not_called_saturated() -> None:
    # EER-like fractions: 0.05 e/px, so the maximum (1 or 2) is shared by ~5 % of pixels
    frames = _frames(mean=0.05, size=512)
    stats = frame_statistics(frames)
    assert all(f == 0.0 for f in stats.saturated_fractions)


def test_dose_mismatch_fails_and_gives_the_ratio() -> None:
    flags = _gate(motion=_motion(dose=20.0), metadata_dose_e_per_a2=40.0)
    flag = next(f for f in flags if f.code == "dose_mismatch")
    assert flag.value == pytest.approx(0.5)
    assert "20 e/A^2" in flag.message and "40 e/A^2" in flag.message


def test_dose_within_tolerance_passes() -> None:
    assert "dose_mismatch" not in _codes(_gate(motion=_motion(dose=36.0)))


def test_missing_metadata_dose_warns() -> None:
    flags = _gate(metadata_dose_e_per_a2=None)
    assert [f.code for f in flags] == ["dose_unknown"]
    assert gate_status(flags) == "warn"


def test_implausible_total_dose_fails() -> None:
    flags = _gate(motion=_motion(dose=900.0), metadata_dose_e_per_a2=900.0)
    assert "dose_implausible" in _codes(flags)


def test_minus_9999_drift_is_caught() -> None:
    shifts = [[0.0, 0.0]] + [[-9999.0, -9999.0]] * 7
    flags = _gate(motion=_motion(shifts))
    codes = _codes(flags)
    assert {"drift_total_implausible", "drift_jump"} <= codes
    jump = next(f for f in flags if f.code == "drift_jump")
    assert "frame 1 moved" in jump.message


def test_all_zero_drift_is_a_failed_alignment() -> None:
    flags = _gate(motion=_motion([[0.0, 0.0]] * 8))
    flag = next(f for f in flags if f.code == "drift_zero")
    assert "exactly 0 px" in flag.message


def test_nan_drift_fails() -> None:
    shifts = [[0.0, 0.0]] * 7 + [[float("nan"), 1.0]]
    flags = _gate(motion=_motion(shifts))
    assert "drift_nonfinite" in _codes(flags)


def test_ctf_at_search_edge_fails() -> None:
    flags = _gate(
        ctf=_ctf(defocus_u_angstrom=50_000, defocus_v_angstrom=49_800, at_search_edge=True)
    )
    flag = next(f for f in flags if f.code == "ctf_search_edge")
    assert "edge of the search range" in flag.message and "0.2-5 um" in flag.message


def test_poor_figure_of_merit_fails() -> None:
    flags = _gate(ctf=_ctf(figure_of_merit=0.01))
    assert "ctf_poor_fit" in _codes(flags)


def test_fit_resolution_beyond_nyquist_is_impossible() -> None:
    flags = _gate(ctf=_ctf(fit_resolution_angstrom=1.5), pixel_size_angstrom=1.0)
    flag = next(f for f in flags if f.code == "ctf_resolution_beyond_nyquist")
    assert "beyond Nyquist" in flag.message


def test_poor_fit_resolution_fails() -> None:
    flags = _gate(ctf=_ctf(fit_resolution_angstrom=25.0))
    assert "ctf_resolution_poor" in _codes(flags)


def test_implausible_astigmatism_fails() -> None:
    flags = _gate(ctf=_ctf(defocus_u_angstrom=25_000, defocus_v_angstrom=10_000))
    assert "ctf_astigmatism_implausible" in _codes(flags)


def test_unsupported_fit_fails_with_estimator_reason() -> None:
    flags = _gate(ctf=_ctf(supported=False, warnings=["rings alias beyond 12 um"]))
    flag = next(f for f in flags if f.code == "ctf_unsupported")
    assert "rings alias beyond 12 um" in flag.message


def test_estimator_warnings_on_a_supported_fit_only_warn() -> None:
    flags = _gate(ctf=_ctf(warnings=["ice estimates disagree: 30 vs 60 nm"]))
    assert gate_status(flags) == "warn"


def test_nonfinite_ctf_fails() -> None:
    flags = _gate(ctf=_ctf(defocus_u_angstrom=float("nan")))
    assert _codes(flags) == {"ctf_nonfinite"}


def test_bad_pixel_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="pixel_size_angstrom must be positive, got 0"):
        _gate(pixel_size_angstrom=0.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_frame_means_and_spreads_equal_the_float64_ones(dtype: type) -> None:
    """Reference values: each frame's mean and standard deviation in float64. Integer counts
    are summed exactly in 64-bit integers (signed ones with negative values too); the results
    agree to 1e-12 relative."""
    rng = np.random.default_rng(5)
    frames = rng.poisson(40.0 if dtype != np.uint8 else 2.0, size=(3, 97, 131))
    if dtype == np.int16:
        frames = frames - 45  # negative values, as a dark-subtracted integer frame may hold
    frames = frames.astype(dtype)
    stats = frame_statistics(frames)
    reference = frames.astype(np.float64)
    np.testing.assert_allclose(stats.frame_means, reference.mean(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(stats.frame_stds, reference.std(axis=(1, 2)), rtol=1e-12)
