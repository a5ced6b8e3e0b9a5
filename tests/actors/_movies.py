"""The simulated movie the exposure-worker tests process: 1.8 um defocus (400 A astigmatism),
40 nm ice, 9 px drift with 1 px local motion, 50 phantom particles, with a drawn detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from causalscope.actors.exposure import ExposureWorker
from causalscope.config import Settings
from causalscope.models.optics import DetectorCalibration
from causalscope.models.records import AcquisitionMetadata
from causalscope.models.simulate.detector import draw_detector
from causalscope.models.simulate.exposure import (
    ExposureParameters,
    SimulatedExposure,
    simulate_exposure,
)
from causalscope.models.simulate.specimen import phantom_specimen


def worker_movie(
    *, size: int, n_frames: int, dose: float, seed: int
) -> tuple[SimulatedExposure, np.ndarray]:
    """The movie and its detector's gain reference (float32)."""
    params = ExposureParameters(
        size_px=size,
        n_frames=n_frames,
        dose_e_per_a2=dose,
        defocus_u_angstrom=18_300.0,
        defocus_v_angstrom=17_900.0,
        defocus_angle_deg=60.0,
        ice_thickness_nm=40.0,
        drift_total_px=9.0,
        local_motion_px=1.0,
        n_particles=50,
        seed=seed,
    )
    detector = draw_detector(np.random.default_rng(seed), (size, size))
    sim = simulate_exposure(params, specimen=phantom_specimen(), detector=detector)
    return sim, detector.gain_reference.astype(np.float32)


def worker_metadata(*, dose: float, n_frames: int) -> AcquisitionMetadata:
    """EPU-like metadata of such a movie: 1 A/px, 300 kV, Cs 2.7 mm."""
    return AcquisitionMetadata(
        source_path="sim.xml",
        source_format="epu",
        pixel_size_angstrom=1.0,
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        dose_e_per_a2=dose,
        n_frames=n_frames,
    )


def make_worker(
    settings: Settings,
    out: Path,
    *,
    gain: np.ndarray | None = None,
    device: str | None = "cpu",
    sums_early: bool | None = None,
) -> ExposureWorker:
    """An exposure worker with the sections of ``settings`` it reads, writing under ``out``."""
    return ExposureWorker(
        microscope=settings.microscope,
        detector=settings.detector,
        processing=settings.processing,
        output_dir=out,
        calibration=DetectorCalibration(gain=gain),
        device=device,
        sums_early=sums_early,
    )
