"""The spectral SNR of a micrograph from its own power spectrum and its fitted CTF.

Model (per Fourier pixel, expected periodogram ``P(k) = |X(k)|^2 / (h w)`` of the zero-mean
image): ``P(k) = N(k) + S(k) CTF(k)^2`` with

- ``N(k) = n0 + n2 k^2``: the noise, white for counting detectors (``n0`` = the Poisson
  variance per pixel) with a slow term for integrating detectors and interpolation;
- ``S(k) = S0 exp(-B k^2 / 2)``: the specimen's power before the CTF, a Gaussian fall-off
  whose power B-factor ``B`` lumps the coherence envelopes, drift, radiation damage, the
  detector MTF and the particles' own spectrum (the amplitude envelope is ``exp(-B k^2/4)``,
  the convention of :func:`models.ctf.bfactor_envelope`).

The CTF's oscillation is what separates the two: in the ring average (``CTF^2`` averaged over
each ring, so astigmatism is respected) the Thon rings swing between ``N`` and ``N + S``. For
each ``B`` on a grid, ``(n0, n2, S0)`` follow by weighted linear least squares (weights
``1 / (P k)`` on the residuals: relative errors, as the periodogram's statistics are
exponential, and less weight for the many high-frequency rings), over the band from
``fit_min_resolution_angstrom`` to ``fit_max_resolution_angstrom``; the best ``B`` wins. This
is the background-plus-envelope model of CTFFIND4 (Rohou & Grigorieff 2015) and of RELION's
``tau^2 / sigma^2`` SSNR (Scheres 2012), reduced to three numbers per micrograph so that it is
stable on one exposure; Warp's deconvolution (Tegunov & Cramer 2019) uses a fixed
``exp(-falloff k)`` SSNR instead. What the fit calls signal includes the vitreous ice (its phase
is transferred by the CTF as the particles' is), so ``SSNR`` is that of the whole specimen.

A prior B-factor (the causal model's) can be given; the fit then solves only the linear part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.restoration._radial import ring_index, ring_mean
from causalscope.models.restoration.ctf_correction import ctf_on_image_grid

__all__ = ["SpectralSnr", "spectral_snr_from_fit", "with_bfactor"]

_B_GRID_ANGSTROM2 = np.concatenate([[0.0], np.geomspace(5.0, 8000.0, 70)])


@dataclass(frozen=True)
class SpectralSnr:
    """A fitted radial SSNR ``S0 exp(-B k^2 / 2) / (n0 + n2 k^2)``; call it with ``|k|`` (1/A).

    Attributes
    ----------
    signal_s0
        ``S0``: specimen power at ``k = 0`` (periodogram units of the image).
    bfactor_angstrom2
        ``B`` of the power envelope ``exp(-B k^2 / 2)``.
    noise_n0, noise_n2
        ``N(k) = n0 + n2 k^2``.
    frequency_per_angstrom, measured_power, ctf2, fitted_power
        The ring averages the fit used (``(n_rings,)`` numpy arrays), for plots and checks.
    fit_band_per_angstrom
        ``(k_min, k_max)`` of the fit.
    """

    signal_s0: float
    bfactor_angstrom2: float
    noise_n0: float
    noise_n2: float
    frequency_per_angstrom: np.ndarray
    measured_power: np.ndarray
    ctf2: np.ndarray
    fitted_power: np.ndarray
    fit_band_per_angstrom: tuple[float, float]

    def signal(self, frequency_per_angstrom: torch.Tensor) -> torch.Tensor:
        """``S(k)``."""
        k2 = frequency_per_angstrom * frequency_per_angstrom
        return self.signal_s0 * torch.exp(-0.5 * self.bfactor_angstrom2 * k2)

    def noise(self, frequency_per_angstrom: torch.Tensor) -> torch.Tensor:
        """``N(k)``, floored at 1 % of ``n0`` so the ratio stays finite."""
        k2 = frequency_per_angstrom * frequency_per_angstrom
        return (self.noise_n0 + self.noise_n2 * k2).clamp(min=0.01 * max(self.noise_n0, 1e-30))

    def __call__(self, frequency_per_angstrom: torch.Tensor) -> torch.Tensor:
        """``SSNR(k) = S(k) / N(k)``."""
        return self.signal(frequency_per_angstrom) / self.noise(frequency_per_angstrom)


def spectral_snr_from_fit(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    defocus_angle_deg: float,
    voltage_kv: float,
    spherical_aberration_mm: float,
    amplitude_contrast: float,
    phase_shift_deg: float = 0.0,
    bfactor_angstrom2: float | None = None,
    noise_variance: float | None = None,
    fit_min_resolution_angstrom: float = 40.0,
    fit_max_resolution_angstrom: float | None = None,
) -> SpectralSnr:
    """Fit the SSNR model of the module docstring to one ``(h, w)`` micrograph.

    Parameters
    ----------
    image
        The micrograph (any offset or scale; the SSNR is scale-free).
    pixel_size_angstrom, defocus_u_angstrom, ..., phase_shift_deg
        The fitted CTF (e.g. from :func:`models.ctf_estimation.estimate_ctf`).
    bfactor_angstrom2
        A prior B-factor (power envelope ``exp(-B k^2/2)``); None fits it.
    noise_variance
        Known white-noise variance per pixel (Poisson: the mean count); pins ``n0`` and sets
        ``n2 = 0``. None fits both.
    fit_min_resolution_angstrom, fit_max_resolution_angstrom
        The fit band (default: 40 A to 0.95 Nyquist). Below it the particles' form factor and
        the low amplitude contrast make the spectrum uninformative about ``S``.
    """
    if image.ndim != 2:
        raise ValueError(f"image must be (h, w), got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("image has non-finite values")
    if noise_variance is not None and not noise_variance > 0:
        raise ValueError(f"noise_variance must be positive, got {noise_variance}")
    if bfactor_angstrom2 is not None and not bfactor_angstrom2 >= 0:
        raise ValueError(f"bfactor_angstrom2 must be >= 0, got {bfactor_angstrom2}")
    k_lo, k_hi = _fit_band(
        pixel_size_angstrom, fit_min_resolution_angstrom, fit_max_resolution_angstrom
    )
    data = image.to(torch.float32)
    k, p_ring, index = _power_rings(data, pixel_size_angstrom)
    ctf = ctf_on_image_grid(
        data,
        pixel_size_angstrom=pixel_size_angstrom,
        defocus_u_angstrom=defocus_u_angstrom,
        defocus_v_angstrom=defocus_v_angstrom,
        defocus_angle_deg=defocus_angle_deg,
        voltage_kv=voltage_kv,
        spherical_aberration_mm=spherical_aberration_mm,
        amplitude_contrast=amplitude_contrast,
        phase_shift_deg=phase_shift_deg,
    )
    c_ring = ring_mean(ctf * ctf, index, k.size).cpu().numpy()
    del ctf
    band = (k >= k_lo) & (k <= k_hi) & (p_ring > 0)
    if band.sum() < 8:
        raise ValueError(f"fit band holds {int(band.sum())} rings; need >= 8 (image too small?)")
    kb, pb, cb = k[band], p_ring[band], c_ring[band]
    # relative errors, and 1/k: without it the many high-k rings let a flat, tiny S explain
    # faint rings (a tiny B, and a Wiener output worse than phase flipping)
    weight = 1.0 / (pb * kb)
    b_grid = _B_GRID_ANGSTROM2 if bfactor_angstrom2 is None else np.array([bfactor_angstrom2])
    best: tuple[float, float, float, float, float] | None = None
    for b in b_grid:
        fit = _fit_linear(kb, pb, cb, weight, float(b), noise_variance)
        if fit is not None and (best is None or fit[0] < best[0]):
            best = fit
    if best is None:
        # no positive signal anywhere: an SSNR of zero (the Wiener filter returns the mean)
        n0 = float(np.median(pb)) if noise_variance is None else noise_variance
        best = (math.inf, float(b_grid[0]), n0, 0.0, 0.0)
    _, b, n0, n2, s0 = best
    return _result(k, p_ring, c_ring, (k_lo, k_hi), b, n0, n2, s0)


def _fit_band(
    pixel_size_angstrom: float,
    fit_min_resolution_angstrom: float,
    fit_max_resolution_angstrom: float | None,
) -> tuple[float, float]:
    """``(k_lo, k_hi)`` of the fit, 1/A: from the min resolution to the max (at most 0.95
    Nyquist); an empty band is an error naming both ends."""
    nyquist = 0.5 / pixel_size_angstrom
    k_lo = 1.0 / fit_min_resolution_angstrom
    k_hi = (
        0.95 * nyquist
        if fit_max_resolution_angstrom is None
        else min(1.0 / fit_max_resolution_angstrom, 0.95 * nyquist)
    )
    if not k_lo < k_hi:
        raise ValueError(
            f"empty fit band: {fit_min_resolution_angstrom} A to "
            f"{1.0 / k_hi:.2f} A at {pixel_size_angstrom} A/px"
        )
    return k_lo, k_hi


def _power_rings(
    data: torch.Tensor, pixel_size_angstrom: float
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``(k, P, index)``: ring frequencies (1/A), the ring-averaged periodogram of the
    zero-mean ``(h, w)`` image, and each ``rfft2`` pixel's ring (for more ring averages)."""
    h, w = data.shape
    spectrum = torch.fft.rfft2(data - data.mean())
    power = spectrum.real.square() + spectrum.imag.square()
    del spectrum
    power /= h * w
    index, k_rings = ring_index((h, w), pixel_size_angstrom=pixel_size_angstrom, device=data.device)
    p_ring = ring_mean(power, index, k_rings.numel()).cpu().numpy()
    return k_rings.cpu().numpy(), p_ring, index


def _fit_linear(
    kb: np.ndarray,
    pb: np.ndarray,
    cb: np.ndarray,
    weight: np.ndarray,
    b: float,
    noise_variance: float | None,
) -> tuple[float, float, float, float, float] | None:
    """``(residual, B, n0, n2, S0)`` of the linear fit at one ``B``; None without signal."""
    envelope = np.exp(-0.5 * b * kb * kb) * cb
    if noise_variance is None:
        design = np.stack([np.ones_like(kb), kb * kb, envelope], axis=1)
        target = pb
    else:
        design = envelope[:, None]
        target = pb - noise_variance
    coef, *_ = np.linalg.lstsq(design * weight[:, None], target * weight, rcond=None)
    if noise_variance is None:
        n0, n2, s0 = (float(c) for c in coef)
    else:
        n0, n2, s0 = noise_variance, 0.0, float(coef[0])
    if s0 <= 0 or n0 <= 0:
        return None
    residual = float(np.sum(((design @ coef - target) * weight) ** 2))
    return residual, b, n0, n2, s0


def _result(
    k: np.ndarray,
    p_ring: np.ndarray,
    c_ring: np.ndarray,
    band: tuple[float, float],
    b: float,
    n0: float,
    n2: float,
    s0: float,
) -> SpectralSnr:
    fitted = n0 + n2 * k * k + s0 * np.exp(-0.5 * b * k * k) * c_ring
    return SpectralSnr(
        signal_s0=s0,
        bfactor_angstrom2=b,
        noise_n0=n0,
        noise_n2=n2,
        frequency_per_angstrom=k,
        measured_power=p_ring,
        ctf2=c_ring,
        fitted_power=fitted,
        fit_band_per_angstrom=band,
    )


def with_bfactor(
    ssnr: SpectralSnr, bfactor_angstrom2: float, *, noise_variance: float | None = None
) -> SpectralSnr:
    """The same fit with ``B`` given (e.g. the causal model's): only the linear part is refitted.

    Reuses the ring averages of ``ssnr``, so it costs no Fourier transform; ``noise_variance``
    as in :func:`spectral_snr_from_fit`. Where no positive signal fits at that ``B``, ``ssnr``
    is returned unchanged.
    """
    if not bfactor_angstrom2 >= 0:
        raise ValueError(f"bfactor_angstrom2 must be >= 0, got {bfactor_angstrom2}")
    k = ssnr.frequency_per_angstrom
    k_lo, k_hi = ssnr.fit_band_per_angstrom
    p_ring, c_ring = ssnr.measured_power, ssnr.ctf2
    band = (k >= k_lo) & (k <= k_hi) & (p_ring > 0)
    kb, pb, cb = k[band], p_ring[band], c_ring[band]
    fit = _fit_linear(kb, pb, cb, 1.0 / (pb * kb), float(bfactor_angstrom2), noise_variance)
    if fit is None:
        return ssnr
    _, b, n0, n2, s0 = fit
    return _result(k, p_ring, c_ring, ssnr.fit_band_per_angstrom, b, n0, n2, s0)
