"""CTF restoration of micrographs: phase flipping, the Wiener filter and its spectral SNR.

- :func:`phase_flip`, :func:`wiener_filter` (:mod:`.ctf_correction`)
- :func:`spectral_snr_from_fit`, :class:`SpectralSnr` (:mod:`.ssnr`): the SSNR from the
  micrograph's own power spectrum and its fitted CTF
- :class:`CtfParameters`: the CTF of one micrograph, as keyword arguments
- :func:`fourier_ring_correlation`, :func:`frc_resolution_angstrom` (:mod:`.frc`)
"""

from causalscope.models.restoration.ctf_correction import (
    SsnrLike,
    ctf_on_image_grid,
    phase_flip,
    ssnr_on_grid,
    wiener_filter,
)
from causalscope.models.restoration.frc import (
    fourier_ring_correlation,
    frc_resolution_angstrom,
    ring_frequencies_per_angstrom,
)
from causalscope.models.restoration.parameters import CtfKwargs, CtfParameters
from causalscope.models.restoration.ssnr import SpectralSnr, spectral_snr_from_fit, with_bfactor

__all__ = [
    "CtfKwargs",
    "CtfParameters",
    "SpectralSnr",
    "SsnrLike",
    "ctf_on_image_grid",
    "fourier_ring_correlation",
    "frc_resolution_angstrom",
    "phase_flip",
    "ring_frequencies_per_angstrom",
    "spectral_snr_from_fit",
    "ssnr_on_grid",
    "wiener_filter",
    "with_bfactor",
]
