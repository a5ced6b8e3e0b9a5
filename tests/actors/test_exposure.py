"""ExposureWorker on simulated movies: results against truth, and every gate failure produced
from a real movie with the reason reported."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import starfile

from causalscope.config import Settings, load_settings
from causalscope.daemon.formats.png import read_png
from causalscope.models.picking import match_picks
from causalscope.models.records import AcquisitionMetadata, ExposureRecord
from causalscope.models.simulate.detector import draw_detector
from causalscope.models.simulate.exposure import (
    ExposureParameters,
    SimulatedExposure,
    simulate_exposure,
)
from causalscope.models.simulate.specimen import phantom_specimen
from tests.actors._movies import make_worker, worker_metadata, worker_movie

SIZE = 1024
FRAMES = 16
DOSE = 40.0


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(None, None, {"processing": {"device": "cpu"}})


@pytest.fixture(scope="module")
def movie() -> tuple[SimulatedExposure, np.ndarray]:
    return worker_movie(size=SIZE, n_frames=FRAMES, dose=DOSE, seed=11)


@pytest.fixture(scope="module")
def small() -> tuple[SimulatedExposure, np.ndarray]:
    """A quick 512 x 512 x 8 movie for the failure modes."""
    params = ExposureParameters(
        size_px=512,
        n_frames=8,
        dose_e_per_a2=DOSE,
        defocus_u_angstrom=18_300.0,
        defocus_v_angstrom=17_900.0,
        ice_thickness_nm=40.0,
        drift_total_px=6.0,
        local_motion_px=0.5,
        n_particles=12,
        seed=12,
    )
    detector = draw_detector(np.random.default_rng(12), (512, 512))
    sim = simulate_exposure(params, specimen=phantom_specimen(), detector=detector)
    return sim, detector.gain_reference.astype(np.float32)


def _metadata(dose: float = DOSE, n_frames: int = FRAMES) -> AcquisitionMetadata:
    return worker_metadata(dose=dose, n_frames=n_frames)


def _process(
    settings: Settings,
    frames: np.ndarray,
    out: Path,
    *,
    gain: np.ndarray | None,
    metadata: AcquisitionMetadata | None = None,
    name: str = "exposure",
) -> ExposureRecord:
    worker = make_worker(settings, out, gain=gain)
    return worker.process(
        frames, exposure_id=name, movie_path=f"{name}.tiff", metadata=metadata or _metadata()
    )


@pytest.fixture(scope="module")
def good(
    settings: Settings, movie: tuple[SimulatedExposure, np.ndarray], tmp_path_factory
) -> tuple[ExposureRecord, Path]:
    sim, gain = movie
    out = tmp_path_factory.mktemp("good")
    return _process(settings, sim.frames, out, gain=gain), out


def test_particles_are_picked_by_the_learned_picker_and_extracted(good, movie) -> None:
    record, _ = good
    sim, _ = movie
    picking = record.picking
    assert picking is not None and picking.n_particles == len(picking.picks_xy_px)
    # the default picker, with the cut it applied stored beside the picks
    assert picking.picker == "learned" and picking.threshold is not None
    assert 0.0 < picking.threshold < 1.0 and min(picking.scores) >= picking.threshold
    truth = np.asarray(sim.truth["particles"], dtype=np.float64)
    match = match_picks(
        np.asarray(picking.picks_xy_px), truth, radius_px=0.25 * picking.particle_diameter_angstrom
    )
    assert match.f1 >= 0.8, (match.precision, match.recall)
    star = starfile.read(record.outputs["particles_star"])
    assert len(star["particles"]) == picking.n_particles
    with mrcfile.open(record.outputs["particles"]) as mrc:
        assert mrc.data.shape == (picking.n_particles, picking.box_px, picking.box_px)


def test_micrographs_are_written_as_float16_when_asked(settings, small, tmp_path) -> None:
    """``processing.micrographs_float16``: the sums go to MRC mode 12 at half the bytes and
    equal the float32 run's to float16's rounding (half a spacing, 2^-11 of each value)."""
    sim, gain = small
    halved = load_settings(
        None, None, {"processing": {"device": "cpu", "micrographs_float16": True}}
    )
    metadata = _metadata(n_frames=8)
    whole = _process(settings, sim.frames, tmp_path / "whole", gain=gain, metadata=metadata)
    half = _process(halved, sim.frames, tmp_path / "half", gain=gain, metadata=metadata)
    for kind in ("aligned_sum", "dose_weighted_sum", "even_sum", "odd_sum"):
        with mrcfile.open(whole.outputs[kind]) as a, mrcfile.open(half.outputs[kind]) as b:
            assert (int(a.header.mode), int(b.header.mode)) == (2, 12), kind
            reference = np.asarray(a.data, dtype=np.float64)
            error = np.abs(np.asarray(b.data, dtype=np.float64) - reference)
            assert (error <= 2.0**-11 * np.abs(reference) + 1e-5).all(), kind
        ratio = Path(half.outputs[kind]).stat().st_size / Path(whole.outputs[kind]).stat().st_size
        assert ratio < 0.51, kind


@pytest.mark.parametrize("early", [True, False])
def test_the_sums_are_written_while_the_ctf_is_fitted(
    settings, small, tmp_path, early: bool
) -> None:
    """``sums_early`` (a GPU's default): the motion's micrographs go to disk beside the later
    stages, so the CTF stage finds the dose-weighted sum there (it waits up to 30 s for it)
    before any thumbnail, which is written after the restoration. Without it (a CPU's) both
    come after the restoration. The record names every file either way."""
    sim, gain = small
    worker = make_worker(settings, tmp_path, gain=gain, sums_early=early)
    fit, seen = worker.ctf, {}

    class Waiting:
        name = fit.name

        def __call__(self, value: Any) -> Any:
            path = tmp_path / "micrographs" / "e_DW.mrc"
            deadline = time.monotonic() + (30.0 if early else 1.0)
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            seen["sums"] = path.exists()
            seen["thumbnail"] = (tmp_path / "thumbnails" / "e.png").exists()
            return fit(value)

    worker.ctf = Waiting()  # type: ignore[assignment]
    record = worker.process(
        sim.frames, exposure_id="e", movie_path="e.tiff", metadata=_metadata(n_frames=8)
    )
    assert seen == {"sums": early, "thumbnail": False}
    assert all(Path(path).exists() for path in record.outputs.values())
    assert {"dose_weighted_sum", "thumbnail", "trajectory"} <= set(record.outputs)


def _codes(record: ExposureRecord) -> set[str]:
    return {f.code for f in record.flags}


def test_good_movie_passes_and_recovers_truth(good, movie) -> None:
    record, _ = good
    sim, _ = movie
    assert record.status in ("pass", "warn"), record.reasons
    assert not [f for f in record.flags if f.severity == "fail"]
    shifts = np.asarray(record.motion.shifts_px)
    # the record's global trajectory against the truth (rigid part: shift + mean local warp)
    error = np.sqrt(np.mean(np.sum((shifts - sim.motion.shifts_px) ** 2, axis=1)))
    assert error < 0.5
    ctf = record.ctf
    assert ctf is not None
    truth_mean = 0.5 * (18_300.0 + 17_900.0)
    assert abs(ctf.defocus_angstrom - truth_mean) < 100
    assert abs(ctf.astigmatism_angstrom - 400.0) < 60
    assert record.motion.measured_dose_e_per_a2 == pytest.approx(DOSE, rel=0.03)


def test_delta_repro_refits_the_halves_near_the_truth(good, settings) -> None:
    """Each half sum's CTF lands near the true defocus; identical-enough halves score high,
    a half replaced by noise does not reproduce the fit."""
    import mrcfile as mrc
    import torch

    from causalscope.actors._repro import ReproStage
    from causalscope.models.optics import Optics

    record, _ = good
    repro = record.repro
    assert repro is not None and record.timings_s["repro"] > 0
    truth_mean = 0.5 * (18_300.0 + 17_900.0)
    for half in (repro.defocus_even_angstrom, repro.defocus_odd_angstrom):
        assert half is not None and abs(half - truth_mean) < 300
    assert repro.z_defocus is not None and repro.z_defocus < 3
    assert 0.3 < repro.delta_repro <= 1.0
    # each half picked as the whole is (the learned picker on the sum itself, not on a Wiener
    # filtered one): about as many particles as on the whole
    assert record.picking is not None
    whole = record.picking.n_particles
    for half_count in (repro.particles_even, repro.particles_odd):
        assert whole and half_count and abs(half_count - whole) <= max(3, 0.15 * whole)
    # the even and the odd frames, each aligned on its own, trace one trajectory (0.10 A)
    assert repro.drift_difference_angstrom is not None and repro.z_drift is not None
    assert repro.drift_difference_angstrom < 0.5
    # 1024 A wide: narrower than the triage's calibrated fields, so it says nothing
    assert record.triage is None
    even = torch.as_tensor(mrc.read(record.outputs["even_sum"]).astype(np.float32))
    drawn = torch.randn(even.shape, generator=torch.Generator().manual_seed(0))
    noise = drawn * even.std() + even.mean()  # one fixed draw of noise
    stage = ReproStage(ctf=settings.processing.ctf, picking=settings.processing.picking)
    optics = Optics(
        pixel_size_angstrom=1.0,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.07,
    )
    broken = stage((even, noise), ctf=record.ctf, optics=optics, templates=None)
    assert broken is not None and broken.delta_repro < repro.delta_repro


def test_stage_timings_are_recorded(good) -> None:
    record, _ = good
    for stage in ("statistics", "motion", "ctf", "gate", "write"):
        assert record.timings_s[stage] >= 0.0
    assert record.timings_s["motion"] > 0


def test_outputs_are_readable_micrographs_and_trajectory(good) -> None:
    record, out = good
    assert set(record.outputs) == {
        "aligned_sum",
        "dose_weighted_sum",
        "even_sum",
        "odd_sum",
        "trajectory",
        "thumbnail",
        "power_spectrum_thumbnail",
        "picks_thumbnail",
        "restored",
        "denoised",
        "particles",
        "particles_star",
    }
    for kind in ("thumbnail", "power_spectrum_thumbnail"):
        picture = read_png(record.outputs[kind])
        assert picture.dtype == np.uint8 and max(picture.shape) <= 512
    # the picks picture: colour, the excluded share tinted as the record says, a ring per pick
    picks = read_png(record.outputs["picks_thumbnail"]).astype(int)
    assert picks.shape[-1] == 3 and max(picks.shape[:2]) <= 512
    red, green, blue = picks[..., 0], picks[..., 1], picks[..., 2]
    tinted = float(((red - blue > 60) & (green < red)).mean())
    assert record.picking is not None and record.picking.excluded_fractions is not None
    assert tinted == pytest.approx(sum(record.picking.excluded_fractions.values()), abs=0.05)
    assert record.picking.n_particles > 0 and ((green - red > 100) & (green - blue > 100)).any()
    sums = {}
    for kind in ("aligned_sum", "dose_weighted_sum", "even_sum", "odd_sum"):
        path = Path(record.outputs[kind])
        assert path.parent == out / "micrographs"
        with mrcfile.open(path) as mrc:
            assert mrc.data.shape == (SIZE, SIZE)
            assert float(mrc.voxel_size.x) == pytest.approx(1.0)
            sums[kind] = np.asarray(mrc.data, dtype=np.float64)
    np.testing.assert_allclose(
        sums["even_sum"] + sums["odd_sum"], sums["dose_weighted_sum"], rtol=1e-4, atol=1e-3
    )
    star = starfile.read(record.outputs["trajectory"])
    table = star["global_shift"]
    np.testing.assert_allclose(
        table[["rlnMicrographShiftX", "rlnMicrographShiftY"]].to_numpy(),
        np.asarray(record.motion.shifts_px),
        atol=1e-3,
    )
    assert star["general"]["rlnImageSizeZ"] == FRAMES
    assert not list(out.rglob("*.part"))


def test_record_round_trips_through_json(good) -> None:
    record, _ = good
    again = ExposureRecord.model_validate_json(record.model_dump_json())
    assert again == record


def test_nan_frames_fail_without_processing(settings, small, tmp_path) -> None:
    sim, gain = small
    frames = sim.frames[:4].astype(np.float32)
    frames[2, 10, 10] = np.nan
    record = _process(settings, frames, tmp_path, gain=gain)
    assert record.status == "fail"
    assert "nonfinite_pixels" in _codes(record)
    assert record.motion is None and record.outputs == {}
    assert [r for r in record.reasons if "NaN" in r] == ["fail: 1 NaN/Inf pixels in frame(s) 2"]


def test_blank_movie_fails(settings, tmp_path) -> None:
    frames = np.zeros((6, 256, 256), dtype=np.uint8)
    record = _process(settings, frames, tmp_path, gain=None)
    assert record.status == "fail"
    flag = next(f for f in record.flags if f.code == "blank_frames")
    assert "6 of 6 frames are blank" in flag.message
    assert record.motion is None and record.outputs == {}


def test_one_blank_frame_fails_but_is_still_processed(settings, small, tmp_path) -> None:
    sim, gain = small
    frames = sim.frames.copy()
    frames[7] = 0
    record = _process(settings, frames, tmp_path, gain=gain)
    assert record.status == "fail"
    flag = next(f for f in record.flags if f.code == "blank_frames")
    assert "frame(s) 7" in flag.message
    assert record.motion is not None  # the operator still sees what the rest gives


def test_saturated_frame_fails(settings, small, tmp_path) -> None:
    sim, gain = small
    frames = sim.frames.copy()
    frames[3, 100:300, :] = np.iinfo(frames.dtype).max
    record = _process(settings, frames, tmp_path, gain=gain)
    assert "saturated_frames" in _codes(record)
    assert record.status == "fail"


def test_dose_disagreeing_with_metadata_fails(settings, small, tmp_path) -> None:
    sim, gain = small
    record = _process(settings, sim.frames, tmp_path, gain=gain, metadata=_metadata(dose=80.0))
    flag = next(f for f in record.flags if f.code == "dose_mismatch")
    assert flag.value == pytest.approx(0.5, rel=0.05)
    assert "80 e/A^2" in flag.message


def test_frame_jump_is_implausible_drift(settings, small, tmp_path) -> None:
    sim, gain = small
    frames = sim.frames.copy()
    frames[5:] = np.roll(frames[5:], shift=120, axis=-1)  # the stage jumped 120 px
    strict = settings.model_copy(
        update={
            "processing": settings.processing.model_copy(
                update={
                    "gate": settings.processing.gate.model_copy(update={"max_frame_shift_px": 50.0})
                }
            )
        }
    )
    record = _process(strict, frames, tmp_path, gain=gain)
    assert "drift_jump" in _codes(record), record.reasons
    flag = next(f for f in record.flags if f.code == "drift_jump")
    assert "frame 5 moved" in flag.message


def test_defocus_outside_search_range_is_reported(settings, small, tmp_path) -> None:
    sim, gain = small
    narrow = settings.model_copy(
        update={
            "processing": settings.processing.model_copy(
                update={
                    "ctf": settings.processing.ctf.model_copy(
                        update={"defocus_min_um": 0.3, "defocus_max_um": 1.0}
                    )
                }
            )
        }
    )
    record = _process(narrow, sim.frames, tmp_path, gain=gain)
    assert record.status == "fail"
    assert _codes(record) & {"ctf_search_edge", "ctf_unsupported", "ctf_poor_fit"}, record.reasons


def test_noise_only_movie_has_no_confident_ctf(settings, tmp_path) -> None:
    rng = np.random.default_rng(5)
    frames = rng.poisson(2.5, size=(FRAMES, SIZE, SIZE)).astype(np.uint8)
    record = _process(settings, frames, tmp_path, gain=None)
    assert record.status == "fail"
    assert _codes(record) & {"ctf_unsupported", "ctf_poor_fit", "ctf_resolution_poor"}


def test_gain_of_the_wrong_size_fails_with_both_sizes(settings, small, tmp_path) -> None:
    sim, _ = small
    record = _process(settings, sim.frames, tmp_path, gain=np.ones((256, 512), np.float32))
    flag = next(f for f in record.flags if f.code == "calibration_mismatch")
    assert "512x512" in flag.message and "512x256" in flag.message


def test_missing_dose_is_measured_from_the_counts_and_warned(settings, small, tmp_path) -> None:
    sim, gain = small
    metadata = _metadata(n_frames=8).model_copy(update={"dose_e_per_a2": None})
    record = _process(settings, sim.frames, tmp_path, gain=gain, metadata=metadata)
    flag = next(f for f in record.flags if f.code == "dose_unknown")
    assert flag.severity == "warn" and "measured from the counts" in flag.message
    assert record.dose_e_per_a2 == pytest.approx(DOSE, rel=0.03)


def test_causal_inputs_are_recorded_and_the_envelope_prior_raises_a_low_fit(
    settings: Settings, movie: tuple[SimulatedExposure, np.ndarray], good, tmp_path: Path
) -> None:
    from causalscope.models.causal import ENVELOPE_FACTORS, EnvelopePrior

    record, _ = good
    assert record.causal is not None and record.ctf is not None and record.restoration is not None
    assert record.causal.fit_resolution_angstrom == record.ctf.fit_resolution_angstrom
    assert record.causal.ice_thickness_nm == record.ctf.ice_thickness_nm
    assert record.causal.n_particles == record.picking.n_particles  # type: ignore[union-attr]
    own = record.restoration.bfactor_fit_angstrom2
    assert record.causal.ssnr_bfactor_angstrom2 == own
    assert record.restoration.ssnr_source == "fit"
    assert record.restoration.bfactor_used_angstrom2 == own
    # a session whose exposures with these factors all had B near own + 1000: the fit is raised
    # to the model's lower bound, B - 2 * residual sd (the weights' sd is zero here)
    p = len(ENVELOPE_FACTORS)
    prior = EnvelopePrior(
        names=ENVELOPE_FACTORS,
        mean=(own + 1000.0,) + (0.0,) * (p - 1),
        cov=tuple((0.0,) * p for _ in range(p)),
        residual_sd=10.0,
        n_exposures=50,
    )
    sim, gain = movie
    worker = make_worker(settings, tmp_path, gain=gain)
    worker.set_restoration_prior(prior)
    again = worker.process(
        sim.frames, exposure_id="exposure", movie_path="exposure.tiff", metadata=_metadata()
    )
    restoration = again.restoration
    assert restoration is not None and restoration.ssnr_source == "causal_prior"
    assert restoration.bfactor_fit_angstrom2 == pytest.approx(own)
    assert restoration.bfactor_used_angstrom2 == pytest.approx(own + 1000.0 - 20.0)
    assert restoration.prior_bfactor_low_angstrom2 == pytest.approx(own + 980.0)
    assert restoration.prior_n_exposures == 50


def test_implausible_metadata_optics_fail_naming_the_value(settings, tmp_path) -> None:
    metadata = _metadata().model_copy(update={"voltage_kv": -300.0})
    frames = np.ones((2, 64, 64), dtype=np.uint8)
    record = _process(settings, frames, tmp_path, gain=None, metadata=metadata)
    assert record.status == "fail" and _codes(record) == {"optics_invalid"}
    assert "voltage_kv must be finite, > 0; got -300.0" in record.flags[0].message
    assert record.motion is None and record.outputs == {} and record.voltage_kv is None
