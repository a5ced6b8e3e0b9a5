"""CTF estimation: periodograms, defocus/astigmatism/phase fits, fit resolution, ice thickness."""

from causalscope.models.ctf_estimation.estimate import auto_box_px, estimate_ctf
from causalscope.models.ctf_estimation.result import CtfEstimate
from causalscope.models.ctf_estimation.spectrum import (
    PowerSpectrum,
    looks_like_power_spectrum,
    power_spectrum,
)

__all__ = [
    "CtfEstimate",
    "PowerSpectrum",
    "auto_box_px",
    "estimate_ctf",
    "looks_like_power_spectrum",
    "power_spectrum",
]
