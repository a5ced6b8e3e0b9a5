"""The contrast transfer function in the RELION / CTFFIND convention, and its envelopes.

Convention (RELION's ``CTF::getCTF``): with the wavelength ``lambda``, the spatial frequency
``k`` (1/Angstrom) at azimuth ``theta`` from the x axis and the defocus along that azimuth
``df = (dU + dV)/2 + (dU - dV)/2 cos(2 (theta - angle))`` (positive underfocus),

    chi(k) = pi lambda df k^2 - pi/2 Cs lambda^3 k^4 + phase_shift
    CTF(k) = sin(chi + atan(Q / sqrt(1 - Q^2)))

so the CTF equals the amplitude contrast ``Q`` at k = 0 and is positive there: an image
``I = 1 - 2 CTF * phase`` shows particles dark, and RELION's inverted images show them white.
RELION's own test value, CTF(dU 10000, dV 12000, 90 deg, 300 kV, Cs 2.7, Q 0.1) at
(10, 10) 1/A = 0.59154, is reproduced in float64.

Every function takes keyword-only physical parameters; scalars or tensors with leading batch
dimensions ``(...)`` broadcast against a frequency grid of shape ``(h, w)`` to ``(..., h, w)``.
"""

from __future__ import annotations

import math

import torch

from causalscope.models.units import (
    ANGSTROM_PER_MM,
    electron_wavelength_angstrom,
    relativistic_gamma,
)

__all__ = [
    "aberration_phase",
    "beam_tilt_phase",
    "bfactor_envelope",
    "ctf_2d",
    "ctf_at",
    "frequency_grid",
    "spatial_coherence_envelope",
    "temporal_coherence_envelope",
]

Param = float | torch.Tensor


def _param(value: Param, like: torch.Tensor) -> torch.Tensor:
    """A parameter as a tensor of the grid's dtype, shaped ``(..., 1, 1)`` to broadcast."""
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return tensor[..., None, None]


def frequency_grid(
    image_shape: tuple[int, int],
    *,
    pixel_size_angstrom: float,
    rfft: bool = True,
    fftshift: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial frequencies ``(kx, ky)`` in 1/Angstrom of a DFT of an ``(h, w)`` image.

    Returns two ``(h, w)`` tensors, or ``(h, w // 2 + 1)`` for ``rfft=True`` (the layout of
    ``torch.fft.rfft2``). ``fftshift`` puts the origin at ``(h // 2, w // 2)``; it cannot be
    combined with ``rfft`` along the last axis, so only the first axis is shifted then.
    """
    h, w = image_shape
    if h < 1 or w < 1:
        raise ValueError(f"image_shape must be positive, got {image_shape}")
    if pixel_size_angstrom <= 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")
    ky = torch.fft.fftfreq(h, d=pixel_size_angstrom, device=device, dtype=dtype)
    if rfft:
        kx = torch.fft.rfftfreq(w, d=pixel_size_angstrom, device=device, dtype=dtype)
    else:
        kx = torch.fft.fftfreq(w, d=pixel_size_angstrom, device=device, dtype=dtype)
    if fftshift:
        ky = torch.fft.fftshift(ky)
        if not rfft:
            kx = torch.fft.fftshift(kx)
    grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")
    return grid_x, grid_y


def aberration_phase(
    kx: torch.Tensor,
    ky: torch.Tensor,
    *,
    defocus_u_angstrom: Param,
    defocus_v_angstrom: Param,
    defocus_angle_deg: Param,
    voltage_kv: float,
    spherical_aberration_mm: Param,
    phase_shift_deg: Param = 0.0,
) -> torch.Tensor:
    """The symmetric aberration phase ``chi(k)`` in radians, shape ``(..., h, w)``."""
    wavelength = electron_wavelength_angstrom(voltage_kv)
    k2 = kx * kx + ky * ky
    azimuth = torch.atan2(ky, kx)
    d_u = _param(defocus_u_angstrom, kx)
    d_v = _param(defocus_v_angstrom, kx)
    angle = torch.deg2rad(_param(defocus_angle_deg, kx))
    cs = _param(spherical_aberration_mm, kx) * ANGSTROM_PER_MM
    defocus = 0.5 * (d_u + d_v) + 0.5 * (d_u - d_v) * torch.cos(2.0 * (azimuth - angle))
    chi = math.pi * wavelength * defocus * k2 - 0.5 * math.pi * cs * wavelength**3 * k2 * k2
    return chi + torch.deg2rad(_param(phase_shift_deg, kx))


def ctf_at(
    kx: torch.Tensor,
    ky: torch.Tensor,
    *,
    defocus_u_angstrom: Param,
    defocus_v_angstrom: Param,
    defocus_angle_deg: Param,
    voltage_kv: float,
    spherical_aberration_mm: Param,
    amplitude_contrast: Param,
    phase_shift_deg: Param = 0.0,
) -> torch.Tensor:
    """The CTF at given frequencies (1/Angstrom), without envelopes; ``(..., h, w)``."""
    q = _param(amplitude_contrast, kx)
    if torch.any((q < 0) | (q >= 1)):
        raise ValueError(f"amplitude_contrast must be in [0, 1), got {amplitude_contrast}")
    chi = aberration_phase(
        kx,
        ky,
        defocus_u_angstrom=defocus_u_angstrom,
        defocus_v_angstrom=defocus_v_angstrom,
        defocus_angle_deg=defocus_angle_deg,
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        phase_shift_deg=phase_shift_deg,
    )
    return torch.sin(chi + torch.atan(q / torch.sqrt(1.0 - q * q)))


def ctf_2d(
    image_shape: tuple[int, int],
    *,
    pixel_size_angstrom: float,
    defocus_u_angstrom: Param,
    defocus_v_angstrom: Param,
    defocus_angle_deg: Param,
    voltage_kv: float,
    spherical_aberration_mm: Param,
    amplitude_contrast: Param,
    phase_shift_deg: Param = 0.0,
    bfactor_angstrom2: Param = 0.0,
    rfft: bool = True,
    fftshift: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The CTF on the DFT grid of an ``(h, w)`` image, times a B-factor envelope."""
    kx, ky = frequency_grid(
        image_shape,
        pixel_size_angstrom=pixel_size_angstrom,
        rfft=rfft,
        fftshift=fftshift,
        device=device,
        dtype=dtype,
    )
    ctf = ctf_at(
        kx,
        ky,
        defocus_u_angstrom=defocus_u_angstrom,
        defocus_v_angstrom=defocus_v_angstrom,
        defocus_angle_deg=defocus_angle_deg,
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift_deg=phase_shift_deg,
    )
    return ctf * bfactor_envelope(kx, ky, bfactor_angstrom2=bfactor_angstrom2)


def bfactor_envelope(
    kx: torch.Tensor, ky: torch.Tensor, *, bfactor_angstrom2: Param
) -> torch.Tensor:
    """``exp(-B k^2 / 4)``: the amplitude envelope of a B-factor (Angstrom^2)."""
    return torch.exp(-_param(bfactor_angstrom2, kx) * (kx * kx + ky * ky) / 4.0)


def beam_tilt_phase(
    kx: torch.Tensor,
    ky: torch.Tensor,
    *,
    beam_tilt_x_mrad: Param,
    beam_tilt_y_mrad: Param,
    voltage_kv: float,
    spherical_aberration_mm: Param,
) -> torch.Tensor:
    """Antisymmetric (coma) phase of a beam tilt, radians: ``2 pi Cs lambda^2 k^2 (k . t)``.

    RELION's ``applyBeamTilt`` convention: an image's transform is multiplied by
    ``exp(+i phase)``. Beam tilt leaves the power spectrum, and so the Thon rings, unchanged.
    """
    wavelength = electron_wavelength_angstrom(voltage_kv)
    cs = _param(spherical_aberration_mm, kx) * ANGSTROM_PER_MM
    tilt_x = _param(beam_tilt_x_mrad, kx) * 1.0e-3
    tilt_y = _param(beam_tilt_y_mrad, kx) * 1.0e-3
    k2 = kx * kx + ky * ky
    return 2.0 * math.pi * cs * wavelength**2 * k2 * (kx * tilt_x + ky * tilt_y)


def temporal_coherence_envelope(
    kx: torch.Tensor,
    ky: torch.Tensor,
    *,
    voltage_kv: float,
    chromatic_aberration_mm: float,
    energy_spread_ev: float,
) -> torch.Tensor:
    """Envelope of the focal spread from the energy spread (FWHM, eV) and Cc.

    ``E_t = exp(-(pi lambda delta k^2)^2 / (16 ln 2))`` with the focal spread
    ``delta = Cc (dE / E) (1 + E/m0c^2) / (1 + E/(2 m0c^2))`` (Reimer, relativistic form).
    """
    wavelength = electron_wavelength_angstrom(voltage_kv)
    gamma = relativistic_gamma(voltage_kv)
    energy_ev = voltage_kv * 1.0e3
    focal_spread = (
        chromatic_aberration_mm
        * ANGSTROM_PER_MM
        * (energy_spread_ev / energy_ev)
        * gamma
        / (1.0 + 0.5 * (gamma - 1.0))
    )
    k2 = kx * kx + ky * ky
    return torch.exp(-((math.pi * wavelength * focal_spread * k2) ** 2) / (16.0 * math.log(2.0)))


def spatial_coherence_envelope(
    kx: torch.Tensor,
    ky: torch.Tensor,
    *,
    defocus_angstrom: Param,
    voltage_kv: float,
    spherical_aberration_mm: float,
    illumination_aperture_mrad: float,
) -> torch.Tensor:
    """Envelope of partial spatial coherence (Frank 1973), Gaussian source of semi-angle alpha.

    ``E_s = exp(-(pi alpha)^2 (Cs lambda^2 k^3 - df k)^2 / ln 2)``; grows with defocus.
    """
    wavelength = electron_wavelength_angstrom(voltage_kv)
    alpha = illumination_aperture_mrad * 1.0e-3
    k = torch.sqrt(kx * kx + ky * ky)
    cs = spherical_aberration_mm * ANGSTROM_PER_MM
    gradient = cs * wavelength**2 * k**3 - _param(defocus_angstrom, kx) * k
    return torch.exp(-((math.pi * alpha) ** 2) * gradient**2 / math.log(2.0))
