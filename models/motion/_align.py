"""Iterative leave-one-out alignment of a stack of (cropped, B-filtered) spectra.

Shared by the whole-frame (global) and the patch alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.dose import dose_filter
from models.motion._fourier import (
    bfactor_filter,
    coarse_peaks,
    crop_frequencies,
    crop_shape,
    crop_spectrum,
    edge_taper,
    peak_variance,
    phase_ramp,
    refine_peaks,
)
from models.motion._smooth import smooth_trajectory

__all__: list[str] = []

#: frames per batch when forming cross-spectra (bounds the temporary memory)
_CHUNK = 8


@dataclass(frozen=True)
class DamageModel:
    """Mid-frame accumulated doses ``(F,)`` e/A^2, the voltage and the pixel size."""

    mid_frame_dose_e_per_a2: torch.Tensor
    voltage_kv: float
    pixel_size_angstrom: float

    def filters(self, stack: SpectraStack) -> torch.Tensor:
        """``(F, H, Wr)`` float32 amplitudes on the stack's cropped grid."""
        k = torch.sqrt(stack.ky[:, None] ** 2 + stack.kx[None, :] ** 2) / self.pixel_size_angstrom
        return dose_filter(
            k.to(torch.float32),
            accumulated_dose_e_per_a2=self.mid_frame_dose_e_per_a2.to(k.device, torch.float32),
            voltage_kv=self.voltage_kv,
        )


@dataclass
class SpectraStack:
    """Cropped, B-filtered spectra ``(F, H, Wr)`` of images of ``shape`` and their grid."""

    spectra: torch.Tensor
    ky: torch.Tensor
    kx: torch.Tensor
    shape: tuple[int, int]
    crop: tuple[int, int]
    filt: torch.Tensor
    noise_power: torch.Tensor

    def peaks(
        self, cross: torch.Tensor, *, start_px: torch.Tensor, half_width_px: float
    ) -> torch.Tensor:
        """Sub-pixel maxima ``(B, 2)`` of cross-spectra ``(B, H, Wr)`` on this stack's grid."""
        return refine_peaks(
            cross,
            self.ky,
            self.kx,
            full_width=self.shape[1],
            start_px=start_px,
            half_width_px=half_width_px,
        )


def prepare_spectra(
    images: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    bfactor_angstrom2: float,
    taper_px: int,
) -> SpectraStack:
    """Spectra of ``images`` ``(F, h, w)``, one image at a time: each image's own mean is
    removed (its DC would otherwise correlate with every other frame at zero shift), the
    edges are tapered, the spectrum is cropped to where the B filter matters and filtered by
    ``exp(-B k^2 / 4)``."""
    n, h, w = images.shape
    device = images.device
    crop = crop_shape(
        (h, w), pixel_size_angstrom=pixel_size_angstrom, bfactor_angstrom2=bfactor_angstrom2
    )
    ky, kx = crop_frequencies((h, w), crop, device=device)
    filt = bfactor_filter(
        ky, kx, pixel_size_angstrom=pixel_size_angstrom, bfactor_angstrom2=bfactor_angstrom2
    )
    window = edge_taper((h, w), device=device, width_px=taper_px)
    out = torch.empty((n, crop[0], crop[1] // 2 + 1), dtype=torch.complex64, device=device)
    noise = torch.empty(n, dtype=torch.float32, device=device)
    # white (shot) noise power per coefficient, from frequencies above 0.4 cycles/px where a
    # counting detector's MTF has removed most signal
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    outer = (fy**2 + fx**2) > 0.16
    for f in range(n):
        image = images[f].to(torch.float32)
        spectrum = torch.fft.rfft2((image - image.mean()) * window)
        noise[f] = spectrum[outer].abs().pow(2).mean() if bool(outer.any()) else 1.0
        out[f] = crop_spectrum(spectrum, crop) * filt
    out[:, 0, 0] = 0
    return SpectraStack(out, ky, kx, (h, w), crop, filt, noise)


def _aligned_sum(stack: SpectraStack, shifts: torch.Tensor) -> torch.Tensor:
    total = torch.zeros_like(stack.spectra[0])
    for start in range(0, stack.spectra.shape[0], _CHUNK):
        stop = start + _CHUNK
        ramps = phase_ramp(-shifts[start:stop], stack.ky, stack.kx)
        total += (stack.spectra[start:stop] * ramps).sum(dim=0)
    return total


def align_stack(
    stack: SpectraStack,
    *,
    iterations: int,
    tolerance_px: float,
    max_shift_px: float,
    initial_px: torch.Tensor | None = None,
    smooth: bool = True,
    damage: DamageModel | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """Shifts ``(F, 2)`` float64 [x, y] of each image relative to image 0, by iterating:
    reference = sum of all *other* images, each moved back by its current shift; new shift =
    sub-pixel maximum of the image's correlation with its reference. Stops when no shift moves
    by more than ``tolerance_px`` or after ``iterations`` rounds.

    With ``damage``, each image's cross-spectrum is further weighted by the amplitude that
    radiation damage leaves in it (Grant & Grigorieff at its mid-frame dose): a matched filter
    that stops late, damaged frames from being aligned on frequencies they no longer carry.
    With ``smooth``, each round's measurements are smoothed in time with their variances
    (:mod:`models.motion._smooth`) before they define the next reference.

    Returns ``(shifts, variances, iterations_used, converged)``; ``variances`` ``(F, 2)`` px^2
    are those of the raw per-image measurements of the last round.
    """
    n = stack.spectra.shape[0]
    device = stack.spectra.device
    frame_filters = None if damage is None else damage.filters(stack)
    coarse_step = max(stack.shape[0] / stack.crop[0], stack.shape[1] / stack.crop[1])
    if initial_px is None:
        shifts = _progressive_start(stack, frame_filters, max_shift_px, coarse_step)
    else:
        shifts = initial_px.to(device=device, dtype=torch.float64).clone()
    variance = torch.ones_like(shifts)
    model: tuple[int, ...] | None = None
    used, converged = 0, False
    for it in range(iterations):
        used = it + 1
        total = _aligned_sum(stack, shifts)
        new = torch.empty_like(shifts)
        variance = torch.empty_like(shifts)
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            own = stack.spectra[start:stop]
            others = total - own * phase_ramp(-shifts[start:stop], stack.ky, stack.kx)
            cross = own * others.conj()
            if frame_filters is not None:
                cross = cross * frame_filters[start:stop]
            new[start:stop] = stack.peaks(cross, start_px=shifts[start:stop], half_width_px=1.0)
            variance[start:stop] = peak_variance(
                cross,
                others,
                stack.noise_power[start:stop],
                stack.filt if frame_filters is None else stack.filt * frame_filters[start:stop],
                stack.ky,
                stack.kx,
                full_width=stack.shape[1],
                peak_px=new[start:stop],
            )
        if smooth:
            # the smoother's model is chosen afresh in the first two rounds only: re-choosing
            # it every round let a 1024^2 movie's last frames flip by 0.34 px between rounds
            new, chosen = smooth_trajectory(new, variance, model)
            if it == 1:
                model = chosen
        new = new - new[0:1]
        change = float((new - shifts).abs().max())
        shifts = new
        if change <= tolerance_px:
            converged = True
            break
    return shifts, variance, used, converged


def _progressive_start(
    stack: SpectraStack,
    frame_filters: torch.Tensor | None,
    max_shift_px: float,
    coarse_step: float,
) -> torch.Tensor:
    """Starting shifts: each image against the running sum of the images before it, aligned.

    A leave-one-out reference built from *unaligned* images holds the specimen at several
    positions at once; after a stage jump, the frames before it can lock onto the larger group
    after it and the iteration never recovers. A running reference has the specimen at one
    position, so the start is right even across jumps; the iteration then refines it.
    """
    n = stack.spectra.shape[0]
    shifts = torch.zeros((n, 2), dtype=torch.float64, device=stack.spectra.device)
    reference = stack.spectra[0].clone()
    for f in range(1, n):
        cross = (stack.spectra[f] * reference.conj())[None]
        if frame_filters is not None:
            cross = cross * frame_filters[f]
        begin = coarse_peaks(cross, stack.crop, stack.shape, max_shift_px=max_shift_px)
        shifts[f] = stack.peaks(cross, start_px=begin, half_width_px=coarse_step)[0]
        reference = (
            reference + stack.spectra[f] * phase_ramp(-shifts[f : f + 1], stack.ky, stack.kx)[0]
        )
    return shifts
