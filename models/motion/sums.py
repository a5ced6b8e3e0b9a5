"""Corrected sums of an aligned movie: plain, CTF (global only), dose-weighted, even/odd.

Per frame ``f`` (one frame in memory at a time): the global shift is removed exactly by a
Fourier phase ramp; the spectrum so shifted is added to the CTF sum; then, if there is a
local model, the frame is resampled at ``r + d(r + shift_f, f)`` by bicubic interpolation
(``grid_sample``; its transfer function falls to about 0.6-0.7 at Nyquist for a random
sub-pixel offset, so the local-corrected sums lose some high-frequency amplitude that the
global-only CTF sum keeps) and transformed again. Resampling the raw frame once at
``r + shift_f + d`` would save a transform but interpolate every frame at a random sub-pixel
offset: on a simulated 1024^2 x 20 movie the odd sum kept only 64 % of the power in the band
next to Nyquist (the first frames' ``d`` is near zero, so they are hardly interpolated here).
The spectrum is added to the aligned sum and, weighted by ``sqrt(F) w_f(k)``
(:mod:`models.motion.dose_weighting`), to the even or odd dose-weighted sum.

Frames of one parity whose local fields lie within :data:`RUN_TOLERANCE_PX` of their mean
(late frames, where the specimen has settled), three or more in a row, are resampled as one:
their shifted spectra are summed, plain and each weighted by its own dose weight, and the two
sums are resampled with the run's mean field (at its mean shift), two resamplings instead of
one per frame. Each frame is then displaced by at most the tolerance from where its own field
puts it (and by the field's change across the run's spread of global shifts, a few pixels
over a field that changes by a few pixels across the whole image: thousandths of a pixel);
the weights stay each frame's own (a weight, a filter, commutes with a smooth
resampling to far below that). A run of two would cost as much and is not made. The
dose-weighted sum is defined as the even sum plus the odd sum (in real space), so
``even + odd == dose_weighted`` exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from causalscope.models.ctf import frequency_grid
from causalscope.models.dose import critical_exposure_e_per_a2
from causalscope.models.motion._fourier import phase_ramp
from causalscope.models.motion.dose_weighting import dose_weighted_scale, frame_end_doses_e_per_a2
from causalscope.models.motion.local import LocalMotionModel
from causalscope.models.parallel import map_pieces, python_threads, small_images

__all__ = ["RUN_TOLERANCE_PX", "CorrectedSums", "corrected_sums"]

#: frames of one parity whose local fields lie within this of their mean are resampled as
#: one run (module docstring): a frame is then displaced by at most this, which keeps
#: cos(pi * 0.05) = 0.988 of its signal at Nyquist
RUN_TOLERANCE_PX = 0.05


@dataclass(frozen=True)
class CorrectedSums:
    """Sums ``(h, w)`` float32 on the frames' device (see :func:`corrected_sums`)."""

    aligned_sum: torch.Tensor
    ctf_sum: torch.Tensor
    dose_weighted_sum: torch.Tensor
    even_sum: torch.Tensor
    odd_sum: torch.Tensor


def _resample(
    image: torch.Tensor,
    model: LocalMotionModel,
    frames: tuple[int, ...],
    shift_px: tuple[float, float],
) -> torch.Tensor:
    """``image`` ``(h, w)`` (the frames already moved back, by ``shift_px`` on average)
    sampled at ``r + d(r + shift_px)``, ``d`` the frames' mean field (bicubic)."""
    h, w = image.shape
    along_x, along_y, cross, xn, yn = model.separable_field(frames, offset_px=shift_px)
    device = image.device
    # grid_sample's coordinates: -1 and 1 are the outer edges of the first and last pixel;
    # the grid is built as (1, 2, h, w) and handed over as its (1, h, w, 2) view, which
    # grid_sample reads as it is (stacking the two into a (h, w, 2) tensor cost 4 ms at 1024^2)
    grid = torch.empty((1, 2, h, w), dtype=torch.float32, device=device)
    for axis, size in ((0, w), (1, h)):
        scale = 2.0 / size
        col, row = scale * along_x[axis], scale * along_y[axis]
        if axis == 0:
            col = col + scale * np.arange(w) + 1.0 / size - 1.0
        else:
            row = row + scale * np.arange(h) + 1.0 / size - 1.0
        part = torch.outer(
            torch.as_tensor(scale * cross[axis] * yn, dtype=torch.float32, device=device),
            torch.as_tensor(xn, dtype=torch.float32, device=device),
            out=grid[0, axis],
        )
        part.add_(torch.as_tensor(col, dtype=torch.float32, device=device)[None, :])
        part.add_(torch.as_tensor(row, dtype=torch.float32, device=device)[:, None])
    return F.grid_sample(
        image[None, None],
        grid.permute(0, 2, 3, 1),
        mode="bicubic",
        padding_mode="border",
        align_corners=False,
    )[0, 0]


def _runs(model: LocalMotionModel, frames: list[int]) -> list[tuple[int, ...]]:
    """``frames`` in runs of one parity whose fields lie within :data:`RUN_TOLERANCE_PX` of
    their mean (:meth:`LocalMotionModel.field_groups`). A run resamples two sums (plain and
    dose-weighted), so runs of two gain nothing and are split into single frames."""
    runs: list[tuple[int, ...]] = []
    for parity in (0, 1):
        same = [f for f in frames if f % 2 == parity]
        for run in model.field_groups(same, RUN_TOLERANCE_PX):
            runs += [run] if len(run) > 2 else [(f,) for f in run]
    return runs


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
    rate = norm = None
    doses = torch.zeros(n, dtype=torch.float64)
    volts = 300.0 if voltage_kv is None else voltage_kv
    if dose_per_frame_e_per_a2 is not None and voltage_kv is not None:
        doses = frame_end_doses_e_per_a2(
            n,
            dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
            pre_exposure_e_per_a2=pre_exposure_e_per_a2,
        )
        # exp(-N / (2 Ne(k))) per frame from one evaluation of Ne(k); the doses grow in equal
        # steps, so each frame's factor is the last one's times exp(rate * step): one product
        # per frame instead of an exponential
        rate = -0.5 / critical_exposure_e_per_a2(k, voltage_kv=volts)
        step = torch.exp(rate * float(doses[1] - doses[0])) if n > 1 else None
        total, q = torch.zeros_like(k), torch.exp(rate * float(doses[0]))
        for f in range(n):
            total.addcmul_(q, q)
            if step is not None and f + 1 < n:
                q.mul_(step)
        norm = dose_weighted_scale(n) / torch.sqrt(total)
    spec_shape = (h, w // 2 + 1)
    shifts_t = torch.as_tensor(shifts_px, dtype=torch.float64, device=device)

    def resampled(
        spectrum: torch.Tensor, model: LocalMotionModel, run: tuple[int, ...]
    ) -> torch.Tensor:
        """The shifted spectrum of frames ``run`` resampled with their (mean) local field; d is
        a function of the frame's own pixel: evaluated at r + the (mean) shift."""
        shift = shifts_t[list(run)].mean(0)
        shifted = torch.fft.irfft2(spectrum, s=(h, w))
        offset = (float(shift[0]), float(shift[1]))
        return torch.fft.rfft2(_resample(shifted, model, run, offset))

    def accumulate(start: int, stride: int) -> tuple[torch.Tensor, ...]:
        """``(ctf, aligned, even, odd)`` spectra summed over frames ``start::stride``."""
        ctf = torch.zeros(spec_shape, dtype=torch.complex64, device=device)
        aligned = torch.zeros_like(ctf) if local_model is not None else ctf
        halves = (torch.zeros_like(ctf), torch.zeros_like(ctf))
        weight = stride_step = None
        if rate is not None and norm is not None:
            weight = torch.exp(rate * float(doses[start])) * norm
            stride_step = torch.exp(rate * float(stride * (doses[1] - doses[0]))) if n > 1 else None
        mine = list(range(start, n, stride))
        runs = [(f,) for f in mine] if local_model is None else _runs(local_model, mine)
        last_of = {run[-1]: run for run in runs}
        # per parity, the open run's shifted spectra summed so far: plain and dose-weighted
        plain: dict[int, torch.Tensor] = {}
        weighted: dict[int, torch.Tensor] = {}
        for f in mine:
            spectrum = torch.fft.rfft2(frames[f].to(torch.float32))
            spectrum *= phase_ramp(-shifts_t[f : f + 1], ky_1d, kx_1d)[0]
            ctf += spectrum
            parity = f % 2
            run = last_of.get(f)
            if local_model is None or run == (f,):  # alone: resampled, then weighted
                if local_model is not None and local_model.moves(f):
                    spectrum = resampled(spectrum, local_model, (f,))
                if local_model is not None:
                    aligned += spectrum
                if weight is not None:
                    spectrum *= weight
                halves[parity].add_(spectrum)
            else:
                # in a run of three or more: the plain and the dose-weighted sums, each
                # resampled once at the run's last frame
                if weight is not None:
                    if parity in weighted:
                        weighted[parity].addcmul_(spectrum, weight)
                    else:
                        weighted[parity] = spectrum * weight
                if parity in plain:
                    plain[parity].add_(spectrum)
                else:
                    plain[parity] = spectrum
                if run is not None:
                    summed = plain.pop(parity)
                    moves = local_model.moves(run)
                    if moves:
                        summed = resampled(summed, local_model, run)
                    aligned += summed
                    if weight is not None:
                        summed = weighted.pop(parity)
                        if moves:
                            summed = resampled(summed, local_model, run)
                    halves[parity].add_(summed)
            if weight is not None and stride_step is not None and f + stride < n:
                weight *= stride_step
        return ctf, aligned, halves[0], halves[1]

    # frames shared between Python threads, each with its own partial sums (models.parallel)
    workers = min(n, python_threads(device))
    parts = map_pieces(
        lambda t: accumulate(t, workers),
        range(workers),
        device=device,
        name="sums",
        one_thread=small_images(h, w),
    )
    ctf, aligned, *halves = (
        functools.reduce(torch.add, terms) for terms in zip(*parts, strict=True)
    )
    aligned_sum = torch.fft.irfft2(aligned, s=(h, w))
    ctf_sum = aligned_sum if local_model is None else torch.fft.irfft2(ctf, s=(h, w))
    even = torch.fft.irfft2(halves[0], s=(h, w))
    odd = torch.fft.irfft2(halves[1], s=(h, w))
    dose_weighted = even + odd
    return CorrectedSums(aligned_sum, ctf_sum, dose_weighted, even, odd)
