"""The fake microscope: exposures with known truth, drawn from a known causal graph."""

from causalscope.models.simulate.detector import (
    DetectorTruth,
    analytic_counting_mtf,
    count_electrons,
    draw_detector,
    tabulated_mtf,
)
from causalscope.models.simulate.exposure import (
    ExposureParameters,
    SimulatedExposure,
    inelastic_mean_free_path_nm,
    simulate_exposure,
)
from causalscope.models.simulate.motion import MotionTruth, draw_motion, local_displacement_px
from causalscope.models.simulate.session import (
    ExposurePlan,
    SessionSettings,
    causal_graph,
    draw_session,
    factor_summary,
)
from causalscope.models.simulate.specimen import Specimen, phantom_specimen

__all__ = [
    "DetectorTruth",
    "ExposureParameters",
    "ExposurePlan",
    "MotionTruth",
    "SessionSettings",
    "SimulatedExposure",
    "Specimen",
    "analytic_counting_mtf",
    "causal_graph",
    "count_electrons",
    "draw_detector",
    "draw_motion",
    "draw_session",
    "factor_summary",
    "inelastic_mean_free_path_nm",
    "local_displacement_px",
    "phantom_specimen",
    "simulate_exposure",
    "tabulated_mtf",
]
