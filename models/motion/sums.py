"""Corrected sums of an aligned movie: plain, CTF (global only), dose-weighted, even/odd.

Per frame ``f`` (one frame in memory at a time): the global shift is removed exactly by a
Fourier phase ramp; the spectrum so shifted is added to the CTF sum; then, if there is a
local model, the frame is resampled at ``r + d(r + shift_f, f)`` by bicubic interpolation
(``grid_sample``; its transfer function falls to about 0.6-0.7 at Nyquist for a random
sub-pixel offset, so the local-corrected sums lose some high-frequency amplitude that the
global-only CTF sum keeps) and transformed again. Its spectrum is added to the aligned sum and,
weighted by ``sqrt(F) w_f(k)`` (:mod:`models.motion.dose_weighting`), to the even or odd
dose-weighted sum. The dose-weighted sum is defined as the even sum plus the odd sum (in real
space), so ``even + odd == dose_weighted`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from causalscope.models.ctf import frequency_grid
from causalscope.models.dose import critical_exposure_e_per_a2
from causalscope.models.motion._fourier import phase_ramp
from causalscope.models.motion.dose_weighting import dose_weighted_scale, frame_end_doses_e_per_a2
from causalscope.models.motion.local import LocalMotionModel

__all__ = ["CorrectedSums", "corrected_sums"]


@dataclass(frozen=True)
class CorrectedSums:
    """Sums ``(h, w)`` float32 on the frames' device (see :func:`corrected_sums`)."""

    aligned_sum: torch.Tensor
    ctf_sum: torch.Tensor
    dose_weighted_sum: torch.Tensor
    even_sum: torch.Tensor
    odd_sum: torch.Tensor


def _warp(frame: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Sample ``frame`` ``(h, w)`` at ``r + field(r)`` (``field`` ``(h, w, 2)`` px, [x, y])."""
    h, w = frame.shape
    ys = torch.arange(h, device=frame.device, dtype=torch.float32)
    xs = torch.arange(w, device=frame.device, dtype=torch.float32)
    gx = (2.0 * (xs[None, :] + field[..., 0]) + 1.0) / w - 1.0
    gy = (2.0 * (ys[:, None] + field[..., 1]) + 1.0) / h - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None]
    return F.grid_sample(
        frame[None, None], grid, mode="bicubic", padding_mode="border", align_corners=False
    )[0, 0]


def corrected_sums(
    frames: torch.Tensor,
    shifts_px: np.ndarray,
    *,
    pixel_size_angstrom: float,
    local_model: LocalMotionModel | None = None,
    dose_per_frame_e_per_a2: float | None = None,
    pre_exposure_e_per_a2: float = 0.0,
    voltage_kv: float | None = None,
) -> CorrectedSums:
    """Sums of ``frames`` ``(F, h, w)`` aligned by ``shifts_px`` ``(F, 2)`` and ``local_model``.

    Without ``dose_per_frame_e_per_a2`` / ``voltage_kv`` (``None``) no dose weighting is done:
    the dose-weighted sum equals the aligned sum and even/odd are the plain even/odd sums.
    """
    n, h, w = frames.shape
    device = frames.device
    kx, ky = frequency_grid((h, w), pixel_size_angstrom=1.0, device=device, dtype=torch.float64)
    ky_1d, kx_1d = ky[:, 0], kx[0, :]
    k = torch.sqrt(kx * kx + ky * ky).to(torch.float32) / pixel_size_angstrom
    norm: torch.Tensor | None = None
    rate = torch.zeros_like(k)
    doses = torch.zeros(n, dtype=torch.float64)
    volts = 300.0 if voltage_kv is None else voltage_kv
    if dose_per_frame_e_per_a2 is not None and voltage_kv is not None:
        doses = frame_end_doses_e_per_a2(
            n,
            dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
            pre_exposure_e_per_a2=pre_exposure_e_per_a2,
        )
        # exp(-N / (2 Ne(k))) per frame from one evaluation of Ne(k)
        rate = -0.5 / critical_exposure_e_per_a2(k, voltage_kv=volts)
        norm = torch.zeros_like(k)
        for f in range(n):
            q = torch.exp(rate * float(doses[f]))
            norm += q * q
        norm = dose_weighted_scale(n) / torch.sqrt(norm)
    spec_shape = (h, w // 2 + 1)
    ctf = torch.zeros(spec_shape, dtype=torch.complex64, device=device)
    aligned = torch.zeros_like(ctf) if local_model is not None else ctf
    halves = [torch.zeros_like(ctf), torch.zeros_like(ctf)]
    shifts_t = torch.as_tensor(shifts_px, dtype=torch.float64, device=device)
    for f in range(n):
        spectrum = torch.fft.rfft2(frames[f].to(torch.float32))
        spectrum *= phase_ramp(-shifts_t[f : f + 1], ky_1d, kx_1d)[0]
        ctf += spectrum
        if local_model is not None:
            # d is a function of the frame's own pixel: evaluate it at r + shift_f
            field = local_model.displacement_field(
                f, device=device, offset_px=(float(shifts_t[f, 0]), float(shifts_t[f, 1]))
            )
            shifted = torch.fft.irfft2(spectrum, s=(h, w))
            spectrum = torch.fft.rfft2(_warp(shifted, field))
            aligned += spectrum
        if norm is not None:
            spectrum = spectrum * (torch.exp(rate * float(doses[f])) * norm)
        halves[f % 2] += spectrum
    aligned_sum = torch.fft.irfft2(aligned, s=(h, w))
    ctf_sum = aligned_sum if local_model is None else torch.fft.irfft2(ctf, s=(h, w))
    even = torch.fft.irfft2(halves[0], s=(h, w))
    odd = torch.fft.irfft2(halves[1], s=(h, w))
    dose_weighted = even + odd
    return CorrectedSums(aligned_sum, ctf_sum, dose_weighted, even, odd)
