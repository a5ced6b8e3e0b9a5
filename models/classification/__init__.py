"""Streaming 2D classification of particle images (in-plane rotations, shifts, CTF)."""

from causalscope.models.classification.averages import (
    frc_first_crossing_angstrom,
    half_set_frc,
    snr_from_frc,
    wiener_average,
)
from causalscope.models.classification.class2d import Assignment, Class2D, Class2DSettings
from causalscope.models.classification.metrics import (
    ClassMetrics,
    class_metrics,
    junk_components,
    select_classes,
)
from causalscope.models.classification.particles import ParticleCtf, fourier_crop

__all__ = [
    "Assignment",
    "Class2D",
    "Class2DSettings",
    "ClassMetrics",
    "ParticleCtf",
    "class_metrics",
    "fourier_crop",
    "frc_first_crossing_angstrom",
    "half_set_frc",
    "junk_components",
    "select_classes",
    "snr_from_frc",
    "wiener_average",
]
