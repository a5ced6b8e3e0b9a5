"""A still micrograph: one drift-free frame of the whole dose, with its truth.

The sum of a movie without drift is a single Poisson frame of the whole dose, so a still
micrograph is simulated as one frame (the benchmarks, the picker's training and the tests use it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from causalscope.models.simulate.exposure import ExposureParameters, simulate_exposure
from causalscope.models.simulate.specimen import phantom_specimen

__all__ = ["still_micrograph", "still_parameters"]


def still_micrograph(
    size: int, *, particles_per_1024: int, seed: int, **parameters: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """One drift-free frame of the whole dose at 1 A/px (float32) of the built-in phantom, and
    its truth. ``parameters`` go to :class:`ExposureParameters` (dose, ice, defocus, ...)."""
    params = still_parameters(size, particles_per_1024=particles_per_1024, seed=seed, **parameters)
    sim = simulate_exposure(params, specimen=phantom_specimen())
    return sim.frames[0].astype(np.float32), sim.truth


def still_parameters(
    size: int, *, particles_per_1024: int, seed: int, **parameters: float
) -> ExposureParameters:
    """The :class:`ExposureParameters` of :func:`still_micrograph`: one drift-free frame at
    1 A/px with ``particles_per_1024`` particles per 1024^2 px."""
    return ExposureParameters(
        size_px=size,
        n_frames=1,
        pixel_size_angstrom=1.0,
        drift_total_px=0.0,
        drift_jitter_px=0.0,
        local_motion_px=0.0,
        intra_frame_blur=False,
        n_particles=int(particles_per_1024 * (size / 1024) ** 2),
        seed=seed,
        **parameters,  # type: ignore[arg-type]
    )
