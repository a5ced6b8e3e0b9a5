"""One simulated movie with a detector and local motion, corrected once for several tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from causalscope.models.motion import MotionCorrection, correct_motion
from causalscope.models.simulate.detector import DetectorTruth, draw_detector
from causalscope.models.simulate.exposure import (
    ExposureParameters,
    SimulatedExposure,
    simulate_exposure,
)
from causalscope.models.simulate.specimen import phantom_specimen

SIZE = 1024
N_FRAMES = 20
DOSE = 40.0


@dataclass
class Case:
    params: ExposureParameters
    sim: SimulatedExposure
    detector: DetectorTruth
    result: MotionCorrection


@pytest.fixture(scope="session")
def detector_case() -> Case:
    params = ExposureParameters(
        size_px=SIZE,
        n_frames=N_FRAMES,
        pixel_size_angstrom=1.0,
        dose_e_per_a2=DOSE,
        drift_total_px=8,
        local_motion_px=1.5,
        seed=1,
    )
    detector = draw_detector(np.random.default_rng(1), (SIZE, SIZE))
    sim = simulate_exposure(params, specimen=phantom_specimen(), detector=detector)
    result = correct_motion(
        sim.frames,
        pixel_size_angstrom=1.0,
        voltage_kv=300,
        dose_per_frame_e_per_a2=DOSE / N_FRAMES,
        gain=detector.gain_reference,
    )
    return Case(params, sim, detector, result)
