"""Motion correction of cryo-EM movies: gain/defects, global and local alignment, dose
weighting, corrected sums and RELION's accumulated-motion statistics.

Shift convention everywhere (the simulator's): ``shifts_px[f]`` = [x, y] position of the
specimen in frame ``f`` relative to frame 0; the specimen point at ``p`` in frame 0 appears
at pixel ``r`` of frame ``f`` with ``p = r - shifts_px[f] - d(r, f)``, ``d`` the local model.
"""

from causalscope.models.motion.accumulated import AccumulatedMotion, accumulated_motion
from causalscope.models.motion.correct import MotionCorrection, correct_motion
from causalscope.models.motion.dose_weighting import (
    dose_weighted_scale,
    dose_weights,
    frame_end_doses_e_per_a2,
)
from causalscope.models.motion.gain import GainCorrection, apply_gain_and_defects
from causalscope.models.motion.global_alignment import GlobalAlignment, align_global
from causalscope.models.motion.local import (
    LocalMotionModel,
    PatchShifts,
    align_patches,
    fit_local_model,
)
from causalscope.models.motion.sums import CorrectedSums, corrected_sums

__all__ = [
    "AccumulatedMotion",
    "CorrectedSums",
    "GainCorrection",
    "GlobalAlignment",
    "LocalMotionModel",
    "MotionCorrection",
    "PatchShifts",
    "accumulated_motion",
    "align_global",
    "align_patches",
    "apply_gain_and_defects",
    "correct_motion",
    "corrected_sums",
    "dose_weighted_scale",
    "dose_weights",
    "fit_local_model",
    "frame_end_doses_e_per_a2",
]
