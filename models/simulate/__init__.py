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
from causalscope.models.simulate.particle_stack import (
    JUNK_KINDS,
    ParticleStack,
    project_specimen,
    simulate_particle_stack,
)
from causalscope.models.simulate.session import (
    ExposurePlan,
    SessionSettings,
    causal_graph,
    draw_session,
    factor_summary,
)
from causalscope.models.simulate.specimen import (
    Specimen,
    elongated_phantom_specimen,
    phantom_specimen,
)

__all__ = [
    "JUNK_KINDS",
    "DetectorTruth",
    "ExposureParameters",
    "ExposurePlan",
    "MotionTruth",
    "ParticleStack",
    "SessionSettings",
    "SimulatedExposure",
    "Specimen",
    "analytic_counting_mtf",
    "causal_graph",
    "count_electrons",
    "draw_detector",
    "draw_motion",
    "draw_session",
    "elongated_phantom_specimen",
    "factor_summary",
    "inelastic_mean_free_path_nm",
    "local_displacement_px",
    "phantom_specimen",
    "project_specimen",
    "simulate_exposure",
    "simulate_particle_stack",
    "tabulated_mtf",
]
