"""One contract for every stage of the exposure worker (:mod:`actors._stages`).

A simulated 512 x 512 x 8 movie (1 A/px, defocus 18300/17900 A at 60 deg, 6 px drift, 12
particles, a drawn detector's gain) goes through the worker's own stages once. Each stage must
then: reject a bad input with a ``ValueError`` that names the value; return a frozen dataclass
whose values carry the units their names say (checked against the simulation's truth); and give
the same output when a fresh worker runs it again on the same input.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import starfile
import torch

from causalscope.actors._stages import MotionStage
from causalscope.actors._values import (
    CtfInput,
    CtfOutput,
    GateInput,
    GateOutput,
    MotionInput,
    MotionOutput,
    OutputInput,
    Outputs,
    RestoreInput,
    RestoreOutput,
)
from causalscope.actors.exposure import ExposureWorker
from causalscope.config import Settings, load_settings
from causalscope.models.gate import frame_statistics
from causalscope.models.optics import DetectorCalibration, Optics
from causalscope.models.picking import match_picks
from causalscope.models.records import AcquisitionMetadata, CtfRecord, FrameStatistics
from causalscope.models.simulate.detector import draw_detector
from causalscope.models.simulate.exposure import (
    ExposureParameters,
    SimulatedExposure,
    simulate_exposure,
)
from causalscope.models.simulate.specimen import phantom_specimen
from tests.actors._movies import make_worker, worker_metadata

SIZE, FRAMES, DOSE, SEED = 512, 8, 40.0, 31
DEFOCUS_U, DEFOCUS_V, ANGLE = 18_300.0, 17_900.0, 60.0


@dataclass
class Pipeline:
    """The simulated exposure, the worker that ran it, and every stage's input and output."""

    sim: SimulatedExposure
    gain: np.ndarray
    settings: Settings
    out: Path
    optics: Optics
    metadata: AcquisitionMetadata
    statistics: FrameStatistics
    worker: ExposureWorker
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    written: dict[str, bytes] = field(default_factory=dict)

    def fresh_worker(self) -> ExposureWorker:
        """Another worker with the same settings, writing to the same folder."""
        return make_worker(self.settings, self.out, gain=self.gain)

    def run(self, name: str, value: Any) -> Any:
        """Run stage ``name`` of this pipeline's worker on ``value``; keep input and output."""
        self.inputs[name] = value
        self.outputs[name] = stage_of(self.worker, name)(value)
        return self.outputs[name]


def stage_of(worker: ExposureWorker, name: str) -> Any:
    return {
        "motion": worker.motion,
        "ctf": worker.ctf,
        "picking": worker.restore,
        "gate": worker.gate,
        "outputs": worker.outputs,
    }[name]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Bitwise the same needs one thread: with two on a loaded machine the BLAS and FFT
    libraries may split sums differently between runs (the CTF fit's last digits moved)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    params = ExposureParameters(
        size_px=SIZE,
        n_frames=FRAMES,
        dose_e_per_a2=DOSE,
        defocus_u_angstrom=DEFOCUS_U,
        defocus_v_angstrom=DEFOCUS_V,
        defocus_angle_deg=ANGLE,
        ice_thickness_nm=40.0,
        drift_total_px=6.0,
        local_motion_px=0.5,
        n_particles=12,
        seed=SEED,
    )
    detector = draw_detector(np.random.default_rng(SEED), (SIZE, SIZE))
    sim = simulate_exposure(params, specimen=phantom_specimen(), detector=detector)
    gain = detector.gain_reference.astype(np.float32)
    settings = load_settings(None, None, {"processing": {"device": "cpu"}})
    out = tmp_path_factory.mktemp("stages")
    metadata = worker_metadata(dose=DOSE, n_frames=FRAMES)
    # the metadata's optics (1 A/px, 300 kV, Cs 2.7 mm) win over the configured ones
    configured = Optics(1.5, 200.0, 2.0, settings.microscope.amplitude_contrast)
    optics = Optics.resolve(configured, metadata=metadata)
    assert (optics.pixel_size_angstrom, optics.voltage_kv, optics.spherical_aberration_mm) == (
        1.0,
        300.0,
        2.7,
    )
    p = Pipeline(
        sim,
        gain,
        settings,
        out,
        optics,
        metadata,
        frame_statistics(sim.frames),
        make_worker(settings, out, gain=gain),
    )
    motion = p.run("motion", MotionInput(sim.frames, optics, p.statistics, DOSE))
    ctf = p.run("ctf", CtfInput.of(motion, optics))
    restore = RestoreInput.of(motion, ctf, optics, dose_e_per_a2=DOSE, metadata=metadata)
    restored = p.run("picking", restore)
    p.run("gate", GateInput(p.statistics, optics, DOSE, motion.record, ctf.record))
    written = p.run("outputs", OutputInput("e1", motion, optics, ctf.record, restored.restoration))
    p.written = _contents(written)
    return p


# --- what each stage must do ------------------------------------------------------------------


def _check_motion(out: MotionOutput, p: Pipeline) -> None:
    shifts = np.asarray(out.record.shifts_px)
    assert shifts.shape == (FRAMES, 2)
    error_px = np.sqrt(np.mean(np.sum((shifts - p.sim.motion.shifts_px) ** 2, axis=1)))
    assert error_px < 0.5
    # counts per pixel over a pixel's area in A^2: the simulated dose in e/A^2
    assert out.record.measured_dose_e_per_a2 == pytest.approx(DOSE, rel=0.03)
    assert out.dose_per_frame_e_per_a2 == pytest.approx(DOSE / FRAMES)
    c = out.correction
    for image in (c.aligned_sum, c.dose_weighted_sum, c.even_sum, c.odd_sum, c.ctf_sum):
        assert tuple(image.shape) == (SIZE, SIZE) and image.dtype == torch.float32


def _check_ctf(out: CtfOutput, p: Pipeline) -> None:
    record = out.record
    assert isinstance(record, CtfRecord) and record.supported, record.warnings
    # Angstrom, positive underfocus
    assert abs(record.defocus_u_angstrom - DEFOCUS_U) < 250
    assert abs(record.defocus_v_angstrom - DEFOCUS_V) < 250
    assert abs((record.defocus_angle_deg - ANGLE + 90) % 180 - 90) < 15
    assert record.fit_resolution_angstrom is not None
    assert 2 * p.optics.pixel_size_angstrom <= record.fit_resolution_angstrom < 30


def _check_restore(out: RestoreOutput, p: Pipeline) -> None:
    picking = out.restoration.record
    truth = np.asarray(p.sim.truth["particles"], dtype=np.float64)
    radius_px = 0.25 * picking.particle_diameter_angstrom / p.optics.pixel_size_angstrom
    picks = np.asarray(picking.picks_xy_px).reshape(-1, 2)
    assert match_picks(picks, truth, radius_px=radius_px).f1 >= 0.8
    assert picking.box_px is not None and picking.box_px % 2 == 0
    particles = out.restoration.particles
    assert particles is not None
    assert particles.shape == (picking.n_particles, picking.box_px, picking.box_px)
    assert tuple(out.restoration.restored.shape) == (SIZE, SIZE)
    assert np.isfinite(out.restoration.bfactor_fit_angstrom2)
    assert out.bfactor_bounds is None  # no envelope prior yet


def _check_gate(out: GateOutput, p: Pipeline) -> None:
    assert out.status in ("pass", "warn") and not [f for f in out.flags if f.severity == "fail"]
    # the metadata's dose is held against the counts' in e/A^2: twice the dose is half measured
    doubled = dataclasses.replace(p.inputs["gate"], dose_e_per_a2=2 * DOSE)
    flag = next(f for f in p.worker.gate(doubled).flags if f.code == "dose_mismatch")
    assert flag.value == pytest.approx(0.5, rel=0.05)


def _check_outputs(out: Outputs, p: Pipeline) -> None:
    files = out.files
    assert {"aligned_sum", "trajectory", "restored", "particles", "particles_star"} <= set(files)
    with mrcfile.open(files["dose_weighted_sum"]) as mrc:
        assert mrc.data.shape == (SIZE, SIZE)
        assert float(mrc.voxel_size.x) == pytest.approx(p.optics.pixel_size_angstrom)
    table = starfile.read(files["trajectory"])["global_shift"]
    np.testing.assert_allclose(
        table[["rlnMicrographShiftX", "rlnMicrographShiftY"]].to_numpy(),
        np.asarray(p.outputs["motion"].record.shifts_px),
        atol=1e-3,
    )
    optics = starfile.read(files["particles_star"])["optics"]
    assert float(optics["rlnSphericalAberration"].iloc[0]) == p.optics.spherical_aberration_mm


def _same_motion(a: MotionOutput, b: MotionOutput, p: Pipeline) -> None:
    assert a.record == b.record and a.dose_per_frame_e_per_a2 == b.dose_per_frame_e_per_a2
    for name in ("aligned_sum", "dose_weighted_sum", "even_sum", "odd_sum", "ctf_sum"):
        assert torch.equal(getattr(a.correction, name), getattr(b.correction, name)), name


def _same_restore(a: RestoreOutput, b: RestoreOutput, p: Pipeline) -> None:
    assert a.restoration.record == b.restoration.record and a.bfactor_bounds == b.bfactor_bounds
    assert torch.equal(a.restoration.restored, b.restoration.restored)
    assert a.restoration.denoised is not None and b.restoration.denoised is not None
    assert torch.equal(a.restoration.denoised, b.restoration.denoised)
    np.testing.assert_array_equal(a.restoration.particles, b.restoration.particles)


def _contents(outputs: Outputs) -> dict[str, bytes]:
    """What each written file holds: an MRC's data and voxel size, a STAR file's tables, a
    PNG's bytes (MRC labels and STAR comments carry the time of writing)."""
    contents = {}
    for kind, name in outputs.files.items():
        path = Path(name)
        if path.suffix in (".mrc", ".mrcs"):
            with mrcfile.open(path) as mrc:
                contents[kind] = mrc.data.tobytes() + repr(mrc.voxel_size).encode()
        elif path.suffix == ".star":
            blocks = starfile.read(path, always_dict=True).values()
            contents[kind] = "".join(
                b.to_csv() if hasattr(b, "to_csv") else repr(sorted(b.items())) for b in blocks
            ).encode()
        else:
            contents[kind] = path.read_bytes()
    return contents


def _equal(a: Any, b: Any, p: Pipeline) -> None:
    assert a == b


def _same_ctf(a: CtfOutput, b: CtfOutput, p: Pipeline) -> None:
    """The same fit to 1e-12: the ice fit's least-squares solve runs in the BLAS library,
    whose sums may split differently with the arrays' memory alignment (the ice thickness's
    last digit moved between two runs in one process)."""
    first, again = a.record.model_dump(), b.record.model_dump()
    assert first.keys() == again.keys()
    for key, value in first.items():
        if isinstance(value, float) and isinstance(again[key], float):
            assert again[key] == pytest.approx(value, rel=1e-12, abs=1e-12, nan_ok=True), key
        else:
            assert again[key] == value, key


def _same_outputs(a: Outputs, b: Outputs, p: Pipeline) -> None:
    """The same files by kind, holding what they held the first time."""
    assert a == b and _contents(b) == p.written


def _unsupported(ctf: CtfRecord) -> CtfRecord:
    return ctf.model_copy(update={"supported": False, "warnings": ["figure of merit 0.01"]})


@dataclass(frozen=True)
class StageCase:
    """A stage's contract: its output type, bad inputs (with the error each must give),
    the unit checks of its output, and how two outputs are compared."""

    name: str
    output: type
    bad: tuple[tuple[Callable[[Pipeline], Any], str], ...]
    check: Callable[[Any, Pipeline], None]
    same: Callable[[Any, Any, Pipeline], None]

    def __str__(self) -> str:
        return self.name


CASES = [
    StageCase(
        "motion",
        MotionOutput,
        (
            (
                lambda p: MotionInput(p.sim.frames[0], p.optics, p.statistics),
                r"frames must be \(F, h, w\) with F >= 1; got shape \(512, 512\)",
            ),
            (
                lambda p: MotionInput(p.sim.frames[:5], p.optics, p.statistics),
                r"statistics describe 8 frames but frames has 5",
            ),
            (
                lambda p: Optics(0.0, 300.0, 2.7, 0.07),
                r"pixel_size_angstrom must be finite, > 0; got 0\.0",
            ),
        ),
        _check_motion,
        _same_motion,
    ),
    StageCase(
        "ctf",
        CtfOutput,
        (
            (
                lambda p: CtfInput(torch.zeros(2, 64, 64), None, p.optics),
                r"image must be a 2-D \(h, w\) image; got \(2, 64, 64\)",
            ),
            (
                lambda p: CtfInput(torch.zeros(64, 64), float("nan"), p.optics),
                r"noise_variance must be finite or None; got nan",
            ),
            (
                lambda p: dataclasses.replace(p.optics, amplitude_contrast=1.2),
                r"amplitude_contrast must be finite, >= 0 and < 1; got 1\.2",
            ),
        ),
        _check_ctf,
        _same_ctf,
    ),
    StageCase(
        "picking",
        RestoreOutput,
        (
            (
                lambda p: dataclasses.replace(
                    p.inputs["picking"], ctf=_unsupported(p.inputs["picking"].ctf)
                ),
                r"ctf must be a supported fit to restore; got supported=False "
                r"\(figure of merit 0\.01\)",
            ),
            (
                lambda p: dataclasses.replace(
                    p.inputs["picking"], halves=(torch.zeros(256, 256), torch.zeros(256, 256))
                ),
                r"halves\[0\] \(even\) is \(256, 256\) but the image is \(512, 512\)",
            ),
        ),
        _check_restore,
        _same_restore,
    ),
    StageCase(
        "gate",
        GateOutput,
        (
            (
                lambda p: dataclasses.replace(
                    p.inputs["gate"],
                    motion=p.inputs["gate"].motion.model_copy(
                        update={"shifts_px": p.inputs["gate"].motion.shifts_px[:7]}
                    ),
                ),
                r"motion\.shifts_px has 7 frames but the statistics describe 8",
            ),
        ),
        _check_gate,
        _equal,
    ),
    StageCase(
        "outputs",
        Outputs,
        (
            (
                lambda p: dataclasses.replace(p.inputs["outputs"], exposure_id="../e1"),
                r"exposure_id must be a file stem without folders; got '\.\./e1'",
            ),
        ),
        _check_outputs,
        _same_outputs,
    ),
]


class TestStageContract:
    """Every stage: bad input named, typed output in its units, deterministic."""

    @pytest.fixture(params=CASES, ids=str)
    def case(self, request: pytest.FixtureRequest) -> StageCase:
        return request.param

    def test_is_a_named_stage_of_frozen_values(self, case: StageCase, pipeline: Pipeline) -> None:
        stage = stage_of(pipeline.worker, case.name)
        assert stage.name == case.name and callable(stage)
        for value in (pipeline.inputs[case.name], pipeline.outputs[case.name]):
            assert dataclasses.is_dataclass(value)
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(value, dataclasses.fields(value)[0].name, None)

    def test_bad_input_is_rejected_naming_the_value(
        self, case: StageCase, pipeline: Pipeline
    ) -> None:
        stage = stage_of(pipeline.worker, case.name)
        for make, message in case.bad:
            with pytest.raises(ValueError, match=message):
                stage(make(pipeline))

    def test_output_has_its_type_and_units(self, case: StageCase, pipeline: Pipeline) -> None:
        output = pipeline.outputs[case.name]
        assert type(output) is case.output
        case.check(output, pipeline)

    def test_same_input_gives_the_same_output(self, case: StageCase, pipeline: Pipeline) -> None:
        first = pipeline.outputs[case.name]
        again = stage_of(pipeline.fresh_worker(), case.name)(pipeline.inputs[case.name])
        assert type(again) is type(first)
        case.same(first, again, pipeline)


def test_a_gain_of_another_size_is_a_calibration_mismatch_naming_both_sizes(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    motion = p.settings.processing.motion
    stage = MotionStage(
        motion=motion,
        dose_weighting=True,
        detector=p.settings.detector,
        calibration=DetectorCalibration(gain=np.ones((256, 512), np.float32)),
        device="cpu",
    )
    with pytest.raises(ValueError, match=re.escape("frames are 512x512 px but the gain reference")):
        stage(p.inputs["motion"])


def test_patches_x_counts_columns_and_patches_y_rows(pipeline: Pipeline) -> None:
    """``patches_x`` patches across the width, ``patches_y`` down the height."""
    p = pipeline
    motion = p.settings.processing.motion.model_copy(update={"patches_x": 3, "patches_y": 2})
    stage = MotionStage(
        motion=motion,
        dose_weighting=True,
        detector=p.settings.detector,
        calibration=DetectorCalibration(gain=p.gain),
        device="cpu",
    )
    positions = stage(p.inputs["motion"]).correction.patch_positions_px
    assert len(np.unique(positions[:, 0])) == 3 and len(np.unique(positions[:, 1])) == 2
