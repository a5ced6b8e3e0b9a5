"""CTF estimation: periodograms, defocus/astigmatism/phase fits, fit resolution, ice thickness."""

from models.ctf_estimation.estimate import estimate_ctf
from models.ctf_estimation.result import CtfEstimate
from models.ctf_estimation.spectrum import PowerSpectrum, looks_like_power_spectrum, power_spectrum

__all__ = [
    "CtfEstimate",
    "PowerSpectrum",
    "estimate_ctf",
    "looks_like_power_spectrum",
    "power_spectrum",
]
