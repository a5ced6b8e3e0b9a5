"""Checks of :func:`models.ctf_estimation.estimate_ctf`'s arguments, each error naming the value."""

from __future__ import annotations

import torch

from causalscope.models.ctf_estimation._model import Optics
from causalscope.models.ctf_estimation.spectrum import looks_like_power_spectrum

__all__ = ["validate_inputs"]


def validate_inputs(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    is_power_spectrum: bool,
    min_resolution_angstrom: float,
    max_resolution_angstrom: float,
    defocus_min_um: float,
    defocus_max_um: float,
    noise_variance: float | None,
    refine_min_resolution_angstrom: float,
) -> Optics:
    if not isinstance(image, torch.Tensor) or image.dim() != 2:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a 2-D tensor (h, w), got {shape}")
    if image.is_complex() or not bool(torch.isfinite(image).all()):
        raise ValueError("image must be real and finite")
    positive = {
        "pixel_size_angstrom": pixel_size_angstrom,
        "voltage_kv": voltage_kv,
        "min_resolution_angstrom": min_resolution_angstrom,
        "max_resolution_angstrom": max_resolution_angstrom,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if spherical_aberration_mm < 0:
        raise ValueError(f"spherical_aberration_mm must be >= 0, got {spherical_aberration_mm}")
    if not 0.0 <= amplitude_contrast < 1.0:
        raise ValueError(f"amplitude_contrast must be in [0, 1), got {amplitude_contrast}")
    if not min_resolution_angstrom > max_resolution_angstrom:
        raise ValueError(
            f"min_resolution_angstrom ({min_resolution_angstrom}) must exceed "
            f"max_resolution_angstrom ({max_resolution_angstrom})"
        )
    if 2.0 * pixel_size_angstrom >= min_resolution_angstrom:
        raise ValueError(
            f"min_resolution_angstrom {min_resolution_angstrom} is beyond Nyquist "
            f"({2 * pixel_size_angstrom} A)"
        )
    if not 0.0 < defocus_min_um < defocus_max_um:
        raise ValueError(
            f"need 0 < defocus_min_um < defocus_max_um, got {defocus_min_um}, {defocus_max_um}"
        )
    if not refine_min_resolution_angstrom > 0:
        raise ValueError(
            f"refine_min_resolution_angstrom must be positive, got {refine_min_resolution_angstrom}"
        )
    if noise_variance is not None and not noise_variance > 0:
        raise ValueError(f"noise_variance must be positive, got {noise_variance}")
    if is_power_spectrum and not looks_like_power_spectrum(image):
        raise ValueError(
            f"is_power_spectrum=True but the {tuple(image.shape)} input is not a centred, "
            "centrosymmetric spectrum"
        )
    return Optics(voltage_kv, spherical_aberration_mm, amplitude_contrast)
