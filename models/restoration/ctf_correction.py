"""CTF correction of micrographs: phase flipping and the Wiener filter.

Convention (:mod:`models.ctf`): an image's contrast is ``x(k) = CTF(k) o(k) + n(k)``, with
``o`` the specimen's projected phase (up to a positive scale) and ``CTF(0) = Q > 0``. A raw
micrograph in counts has ``I = N (1 - 2 CTF * phase)``, so its particles are dark; these
filters keep whatever polarity the input has (negate first, e.g. ``mean - I``, for white
particles). Both filters leave the mean (the ``k = 0`` term) unchanged.

Wiener filter (Frank, *Three-Dimensional Electron Microscopy of Macromolecular Assemblies*,
2006, ch. 2; Penczek, Methods Enzymol. 482, 2010): the linear estimate of ``o`` that minimises
the expected squared error is

    W(k) = CTF(k) / (CTF(k)^2 + 1 / SSNR(k))  =  SSNR CTF / (SSNR CTF^2 + 1)

where ``SSNR(k) = S(k) / N(k)`` is the ratio of the specimen's power (before the CTF) to the
noise power at frequency ``k`` (see :mod:`models.restoration.ssnr`). Where the SSNR is high it
divides by the CTF; near CTF zeros and where the SSNR falls it goes to zero. Phase flipping is
``sign(CTF)``: it corrects the sign and leaves every amplitude as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from causalscope.models.ctf import ctf_2d
from causalscope.models.restoration._radial import frequency_magnitude

__all__ = ["SsnrLike", "ctf_on_image_grid", "phase_flip", "ssnr_on_grid", "wiener_filter"]

#: a radial SSNR: samples on ``linspace(0, Nyquist, n)``, or a function of ``|k|`` (1/A)
SsnrLike = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def _check_image(image: torch.Tensor) -> None:
    if image.ndim < 2:
        raise ValueError(f"image must be (..., h, w), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a floating-point tensor, got {image.dtype}")
    if min(image.shape[-2:]) < 2:
        raise ValueError(f"image must be at least 2 x 2, got {tuple(image.shape[-2:])}")


def ctf_on_image_grid(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float | torch.Tensor,
    defocus_v_angstrom: float | torch.Tensor,
    defocus_angle_deg: float | torch.Tensor,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    phase_shift_deg: float | torch.Tensor = 0.0,
    bfactor_angstrom2: float = 0.0,
) -> torch.Tensor:
    """The CTF on the ``rfft2`` grid of ``image`` ``(..., h, w)``, in its dtype and device."""
    _check_image(image)
    return ctf_2d(
        (image.shape[-2], image.shape[-1]),
        pixel_size_angstrom=pixel_size_angstrom,
        defocus_u_angstrom=defocus_u_angstrom,
        defocus_v_angstrom=defocus_v_angstrom,
        defocus_angle_deg=defocus_angle_deg,
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift_deg=phase_shift_deg,
        bfactor_angstrom2=bfactor_angstrom2,
        device=image.device,
        dtype=torch.float32 if image.dtype != torch.float64 else torch.float64,
    )


def _apply(image: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """Multiply the spectrum of ``image`` by ``transfer`` (DC kept) and transform back."""
    transfer = transfer.clone()
    transfer[..., 0, 0] = 1.0
    spectrum = torch.fft.rfft2(image)
    out = torch.fft.irfft2(spectrum * transfer, s=image.shape[-2:])
    return out.to(image.dtype)


def phase_flip(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float | torch.Tensor,
    defocus_v_angstrom: float | torch.Tensor,
    defocus_angle_deg: float | torch.Tensor,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    phase_shift_deg: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Multiply the spectrum of ``image`` ``(..., h, w)`` by ``sign(CTF)``.

    Applying it twice returns the image (``sign^2 = 1`` except exactly on a zero). CTF
    parameters may be tensors with the image's leading batch shape (one CTF per image).
    """
    ctf = ctf_on_image_grid(
        image,
        pixel_size_angstrom=pixel_size_angstrom,
        defocus_u_angstrom=defocus_u_angstrom,
        defocus_v_angstrom=defocus_v_angstrom,
        defocus_angle_deg=defocus_angle_deg,
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift_deg=phase_shift_deg,
    )
    return _apply(image, torch.sign(ctf))


def ssnr_on_grid(
    ssnr: SsnrLike,
    image_shape: tuple[int, int],
    *,
    pixel_size_angstrom: float,
    device: torch.device | str,
) -> torch.Tensor:
    """Evaluate a radial SSNR on the ``rfft2`` grid; negative values raise ``ValueError``."""
    k = frequency_magnitude(image_shape, pixel_size_angstrom=pixel_size_angstrom, device=device)
    if callable(ssnr):
        values = torch.as_tensor(ssnr(k), device=device, dtype=torch.float32)
    else:
        samples = torch.as_tensor(ssnr, device=device, dtype=torch.float32)
        if samples.ndim != 1 or samples.numel() < 2:
            raise ValueError(
                f"ssnr samples must be a 1-D tensor of >= 2 values on linspace(0, Nyquist, n), "
                f"got shape {tuple(samples.shape)}"
            )
        # linear interpolation on linspace(0, Nyquist); corners beyond Nyquist get the last value
        position = (k / (0.5 / pixel_size_angstrom)) * (samples.numel() - 1)
        position = position.clamp(0, samples.numel() - 1)
        lower = position.floor().long().clamp(max=samples.numel() - 2)
        frac = position - lower
        low, high = samples[lower], samples[lower + 1]
        mixed = low * (1 - frac) + high * frac  # NaN only for inf * 0, replaced below
        values = torch.where(frac == 0, low, torch.where(frac == 1, high, mixed))
    if values.shape[-2:] != k.shape:
        raise ValueError(f"ssnr callable returned shape {tuple(values.shape)}, expected {k.shape}")
    if torch.isnan(values).any():
        raise ValueError("ssnr has NaN values")
    if (values < 0).any():
        raise ValueError(f"ssnr must be >= 0, min was {float(values.min())}")
    return values


def wiener_filter(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float | torch.Tensor,
    defocus_v_angstrom: float | torch.Tensor,
    defocus_angle_deg: float | torch.Tensor,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    ssnr: SsnrLike,
    phase_shift_deg: float | torch.Tensor = 0.0,
    bfactor_angstrom2: float = 0.0,
) -> torch.Tensor:
    """Wiener-filter ``image`` ``(..., h, w)``: ``W = SSNR CTF / (SSNR CTF^2 + 1)``.

    Parameters
    ----------
    ssnr
        The spectral SNR of the specimen before the CTF: a 1-D tensor sampled on
        ``linspace(0, Nyquist, n)`` (interpolated linearly, the last value beyond Nyquist), or
        a callable mapping ``|k|`` (1/Angstrom, an ``(h, w // 2 + 1)`` tensor) to the SSNR,
        e.g. a :class:`models.restoration.SpectralSnr`. ``inf`` gives the inverse filter.
    bfactor_angstrom2
        An amplitude envelope ``exp(-B k^2 / 4)`` included in the CTF. Leave 0 when the SSNR
        already carries the envelope (as :func:`spectral_snr_from_fit`'s does).
    """
    ctf = ctf_on_image_grid(
        image,
        pixel_size_angstrom=pixel_size_angstrom,
        defocus_u_angstrom=defocus_u_angstrom,
        defocus_v_angstrom=defocus_v_angstrom,
        defocus_angle_deg=defocus_angle_deg,
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift_deg=phase_shift_deg,
        bfactor_angstrom2=bfactor_angstrom2,
    )
    snr = ssnr_on_grid(
        ssnr,
        (image.shape[-2], image.shape[-1]),
        pixel_size_angstrom=pixel_size_angstrom,
        device=image.device,
    ).to(ctf.dtype)
    finite = torch.isfinite(snr)
    safe = torch.where(finite, snr, torch.zeros_like(snr))
    transfer = torch.where(
        finite,
        safe * ctf / (safe * ctf * ctf + 1.0),
        1.0 / torch.where(ctf == 0, torch.ones_like(ctf), ctf) * (ctf != 0),
    )
    return _apply(image, transfer)
