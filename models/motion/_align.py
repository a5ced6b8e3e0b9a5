"""Iterative leave-one-out alignment of stacks of (cropped, B-filtered) spectra.

Shared by the whole-frame (global) and the patch alignment. Stacks carry a leading batch of
independent movies (``P``: one for the whole frame, one per patch), all aligned at once: every
step is one tensor operation over all patches and frames (in chunks that bound the temporary
memory), so the number of operations does not grow with the number of patches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from causalscope.models.dose import dose_filter
from causalscope.models.motion._fourier import (
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
from causalscope.models.motion._smooth import smooth_trajectory
from causalscope.models.motion._weights import signal_weights
from causalscope.models.parallel import (
    map_pieces,
    one_torch_thread,
    python_threads,
    small_images,
)

__all__: list[str] = []

#: complex elements per temporary tensor when forming cross-spectra or spectra: bounds memory
#: (about 128 MiB per temporary on a CPU; a GPU takes bigger batches, fewer kernel launches)
_CPU_BATCH_ELEMENTS = 2**24
_GPU_BATCH_ELEMENTS = 2**27


def batch_elements(device: torch.device) -> int:
    """Complex elements per temporary on ``device`` (see :data:`_CPU_BATCH_ELEMENTS`)."""
    return _GPU_BATCH_ELEMENTS if device.type == "cuda" else _CPU_BATCH_ELEMENTS


@dataclass(frozen=True)
class DamageModel:
    """Mid-frame accumulated doses ``(F,)`` e/A^2, the voltage and the pixel size."""

    mid_frame_dose_e_per_a2: torch.Tensor
    voltage_kv: float
    pixel_size_angstrom: float

    _filters: dict[tuple[Any, ...], torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def amplitudes(
        self, frequency_px: torch.Tensor, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """``(F, *frequency.shape)`` amplitudes each frame keeps at its mid-frame dose, at
        spatial frequencies in cycles per pixel (computed in ``dtype``)."""
        k = (frequency_px / self.pixel_size_angstrom).to(dtype)
        return dose_filter(
            k,
            accumulated_dose_e_per_a2=self.mid_frame_dose_e_per_a2.to(k.device, dtype),
            voltage_kv=self.voltage_kv,
        )

    def filters(self, stack: SpectraStack) -> torch.Tensor:
        """``(F, H, Wr)`` float32 amplitudes on the stack's cropped grid (kept for the next
        stack on the same grid: every patch of a movie shares one)."""
        key = (stack.shape, stack.crop, str(stack.ky.device))
        if key not in self._filters:
            k = torch.sqrt(stack.ky[:, None] ** 2 + stack.kx[None, :] ** 2)
            self._filters[key] = self.amplitudes(k, torch.float32)
        return self._filters[key]


@dataclass
class SpectraStack:
    """Cropped, B-filtered spectra ``(P, F, H, Wr)`` of images of ``shape`` and their grid;
    ``noise_power`` ``(P, F)``."""

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
    images: torch.Tensor | Callable[[int, int], torch.Tensor],
    *,
    batch_shape: tuple[int, int] | None = None,
    image_shape: tuple[int, int] | None = None,
    device: torch.device | None = None,
    pixel_size_angstrom: float,
    bfactor_angstrom2: float,
    taper_px: int,
) -> SpectraStack:
    """Spectra of ``(P, F, h, w)`` images: each image's own mean is removed (its DC would
    otherwise correlate with every other frame at zero shift), the edges are tapered, the
    spectrum is cropped to where the B filter matters and filtered by ``exp(-B k^2 / 4)``.

    ``images`` is the tensor ``(P, F, h, w)`` (or ``(F, h, w)``, taken as ``P = 1``), or a
    function ``(start, stop) -> (stop - start, h, w)`` float32 images of the flattened
    ``P * F`` index range, with ``batch_shape`` ``(P, F)``, ``image_shape`` and ``device``
    given: the images are then made chunk by chunk and never held all at once.
    """
    source: Callable[[int, int], torch.Tensor]
    if isinstance(images, torch.Tensor):
        tensor = images if images.dim() == 4 else images[None]
        batch_shape = (int(tensor.shape[0]), int(tensor.shape[1]))
        image_shape = (int(tensor.shape[-2]), int(tensor.shape[-1]))
        device = tensor.device
        flat = tensor.reshape(-1, *image_shape)

        source = functools.partial(_rows, flat)

    else:
        if batch_shape is None or image_shape is None or device is None:
            raise ValueError("a chunk function needs batch_shape, image_shape and device")
        source = images
    h, w = image_shape
    crop = crop_shape(
        (h, w), pixel_size_angstrom=pixel_size_angstrom, bfactor_angstrom2=bfactor_angstrom2
    )
    ky, kx = crop_frequencies((h, w), crop, device=device)
    filt = bfactor_filter(
        ky, kx, pixel_size_angstrom=pixel_size_angstrom, bfactor_angstrom2=bfactor_angstrom2
    )
    window = edge_taper((h, w), device=device, width_px=taper_px)
    # the mean is removed after the transform: the windowed image minus its windowed mean m
    # has the spectrum F[w x] - m F[w], and m is F[w x] at zero over the sum of w (one pass
    # over the image instead of three)
    window_spectrum = torch.fft.rfft2(window)
    window_sum = float(window.sum())
    window_crop = crop_spectrum(window_spectrum[None], crop)[0] * filt
    n = batch_shape[0] * batch_shape[1]
    out = torch.empty((n, crop[0], crop[1] // 2 + 1), dtype=torch.complex64, device=device)
    noise = torch.empty(n, dtype=torch.float32, device=device)
    # white (shot) noise power per coefficient, from the columns at or above 0.4 cycles/px
    # (every row), where a counting detector's MTF has removed most signal
    first_column = math.ceil(0.4 * w)
    window_band = window_spectrum[:, first_column:]
    n_band = h * max(0, w // 2 + 1 - first_column) if h > 2 and w > 2 else 0
    chunk = max(1, batch_elements(device) // (h * (w // 2 + 1)))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        spectrum = torch.fft.rfft2(source(start, stop) * window)
        mean = (spectrum[:, 0, 0].real / window_sum).to(spectrum.dtype)[:, None, None]
        if n_band > 0:
            band = spectrum[:, :, first_column:] - mean * window_band
            noise[start:stop] = torch.view_as_real(band).square().sum(dim=(1, 2, 3)) / n_band
        else:
            noise[start:stop] = 1.0
        cropped = crop_spectrum(spectrum, crop) * filt
        out[start:stop] = cropped.addcmul_(mean, window_crop, value=-1)
        del spectrum, cropped
    out = out.reshape(*batch_shape, crop[0], crop[1] // 2 + 1)
    out[:, :, 0, 0] = 0
    return SpectraStack(out, ky, kx, (h, w), crop, filt, noise.reshape(batch_shape))


def _rows(flat: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    return flat[start:stop].to(torch.float32)


def _frame_chunk(stack: SpectraStack) -> int:
    p, _, hh, wr = stack.spectra.shape
    return max(1, batch_elements(stack.spectra.device) // (p * hh * wr))


def _frame_ranges(n: int, step: int, pieces: int) -> list[tuple[int, int]]:
    """``(start, stop)`` chunks of ``n`` frames, at most ``step`` long and at least ``pieces``
    of them when there are that many frames (one per Python thread)."""
    step = max(1, min(step, -(-n // max(1, pieces))))
    return [(start, min(n, start + step)) for start in range(0, n, step)]


def _aligned_sum(stack: SpectraStack, shifts: torch.Tensor, *, split: bool = False) -> torch.Tensor:
    """``(P, H, Wr)``: every patch's spectra moved back by ``shifts`` ``(P, F, 2)`` and summed
    (with ``split``, the frames shared between Python threads)."""
    p, n = stack.spectra.shape[:2]
    device = stack.spectra.device

    def part(chunk: tuple[int, int]) -> torch.Tensor:
        start, stop = chunk
        ramps = phase_ramp(-shifts[:, start:stop].reshape(-1, 2), stack.ky, stack.kx)
        ramps = ramps.reshape(p, stop - start, *ramps.shape[-2:])
        return (stack.spectra[:, start:stop] * ramps).sum(dim=1)

    chunks = _frame_ranges(n, _frame_chunk(stack), python_threads(device) if split else 1)
    if split:
        parts = map_pieces(part, chunks, device=device, name="frames", one_thread=True)
        return functools.reduce(torch.add, parts)
    total = part(chunks[0])
    for chunk in chunks[1:]:
        total += part(chunk)
    return total


def _measure(
    stack: SpectraStack,
    shifts: torch.Tensor,
    frame_filters: torch.Tensor | None,
    *,
    variance: bool = True,
    split: bool = False,
    search: bool = True,
    total: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One round of :func:`align_stack`: each image's shift ``(P, F, 2)`` against the sum of
    the others moved by ``shifts``, and (with ``variance``) the variance of that
    measurement. With ``search`` each peak is first searched on a grid over +-1 px around its
    shift, else refined from the shift itself. With ``split`` the frames are shared between
    Python threads (:mod:`models.parallel`). ``total`` is the aligned sum at ``shifts`` when
    the caller has it."""
    p, n = stack.spectra.shape[:2]
    device = stack.spectra.device
    if total is None:
        total = _aligned_sum(stack, shifts, split=split)  # (P, H, Wr)
    new = torch.empty_like(shifts)
    measured_variance = torch.empty_like(shifts) if variance else None

    def measure(chunk: tuple[int, int]) -> None:
        start, stop = chunk
        own = stack.spectra[:, start:stop]  # (P, c, H, Wr)
        ramps = phase_ramp(-shifts[:, start:stop].reshape(-1, 2), stack.ky, stack.kx)
        others = torch.addcmul(total[:, None], own, ramps.reshape(own.shape), value=-1)
        del ramps
        cross = own * others.conj()
        filt = stack.filt
        if frame_filters is not None:
            cross = cross * frame_filters[:, start:stop]
            filt = stack.filt * frame_filters[:, start:stop]
        peaks = stack.peaks(
            cross.reshape(-1, *cross.shape[-2:]),
            start_px=shifts[:, start:stop].reshape(-1, 2),
            half_width_px=1.0 if search else 0.0,
        ).reshape(p, stop - start, 2)
        new[:, start:stop] = peaks
        if measured_variance is not None:
            measured_variance[:, start:stop] = peak_variance(
                cross,
                others,
                stack.noise_power[:, start:stop],
                filt,
                stack.ky,
                stack.kx,
                full_width=stack.shape[1],
                peak_px=peaks,
            )

    chunks = _frame_ranges(n, _frame_chunk(stack), python_threads(device) if split else 1)
    if split:
        map_pieces(measure, chunks, device=device, name="frames", one_thread=True)
    else:
        for chunk in chunks:
            measure(chunk)
    return new, measured_variance


def align_stack(
    stack: SpectraStack,
    *,
    iterations: int,
    tolerance_px: float,
    max_shift_px: float,
    initial_px: torch.Tensor | None = None,
    smooth: bool = True,
    damage: DamageModel | None = None,
    split: bool = False,
    measured_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """Shifts ``(P, F, 2)`` float64 [x, y] of each image relative to image 0 of its patch, by
    iterating: reference = sum of all *other* images, each moved back by its current shift;
    new shift = sub-pixel maximum of the image's correlation with its reference. A patch stops
    (its shifts no longer change) once none of its shifts moves by more than ``tolerance_px``;
    the iteration ends when every patch has stopped or after ``iterations`` rounds.

    With ``split`` (one patch of small images, :func:`models.parallel.small_images`: at 4096^2
    a split cost time and memory), each round's frames are shared between Python threads, each
    on one torch thread.

    With ``damage``, each image's cross-spectrum is further weighted by the amplitude that
    radiation damage leaves in it (Grant & Grigorieff at its mid-frame dose): a matched filter
    that stops late, damaged frames from being aligned on frequencies they no longer carry.
    With ``smooth`` (one patch only: the whole frame), each round's measurements are smoothed
    in time with their variances (:mod:`models.motion._smooth`) before they define the next
    reference. Without ``initial_px`` (one patch only) the start is progressive (each image
    against the running sum of those before it). With ``measured_weights``, each
    cross-spectrum is weighed by the specimen's power measured on its patch's aligned sum at
    the start (:mod:`models.motion._weights`) instead of the fixed B filter and the damage
    (the progressive start itself keeps them, and so does a patch without measurable signal).

    Returns ``(shifts, variances, iterations_used, converged)``; ``variances`` ``(P, F, 2)``
    px^2 are those of the raw per-image measurements of the last round (for a patch that
    stopped earlier, measured at the shifts it kept; with ``smooth``, of the second round,
    which the later rounds' smoothing reuses).
    """
    p, n = stack.spectra.shape[:2]
    device = stack.spectra.device
    split = split and p == 1 and small_images(*stack.shape)
    if (smooth or initial_px is None) and p != 1:
        raise ValueError(f"smoothing and a progressive start need one patch, got {p}")
    # (1 or P, F, H, Wr): the damage's filters are the same for every patch; measured
    # weights replace them after a progressive start, or from the first round on
    frame_filters = None
    if damage is not None and (initial_px is None or not measured_weights):
        frame_filters = damage.filters(stack)[None]
    coarse_step = max(stack.shape[0] / stack.crop[0], stack.shape[1] / stack.crop[1])
    if initial_px is None:
        # frame after frame, each step a few small operations: one torch thread (at 1024^2
        # 67 ms against 105-134 ms on two)
        with one_torch_thread(split):
            shifts = _progressive_start(stack, frame_filters, max_shift_px, coarse_step)[None]
    else:
        shifts = initial_px.to(device=device, dtype=torch.float64).reshape(p, n, 2).clone()
    start_sum = None
    if measured_weights:
        start_sum = _aligned_sum(stack, shifts, split=split)  # the first round's too
        signal_filters, has_signal = signal_weights(
            stack.filt,
            stack.ky,
            stack.kx,
            stack.shape,
            start_sum,
            stack.noise_power,
            damage=None if damage is None else damage.amplitudes,
        )
        if not bool(has_signal.all()):  # a blank patch keeps the fixed filter
            signal_filters[~has_signal] = 1.0 if damage is None else damage.filters(stack)
        frame_filters = signal_filters
    variance: torch.Tensor | None = None
    active = torch.ones(p, dtype=torch.bool, device=device)
    weights: torch.Tensor | None = None
    used, converged = 0, False
    for it in range(iterations):
        used = it + 1
        # Variances: without smoothing only the last round's are used, and the other rounds
        # skip them (a patch's two rounds: 0.06 s of 0.9 s at 1024^2 on one thread); the
        # smoother's are measured in the two rounds that choose its weights and kept after.
        # Peaks: the first round searches each on a grid around its start; later rounds
        # refine from the last round's maxima, a fraction of a pixel away (the grid was
        # about two fifths of the peaks' cost; the same maxima to 1e-4 px).
        fresh = it < 2 if smooth else it == iterations - 1
        new, measured = _measure(
            stack,
            shifts,
            frame_filters,
            variance=fresh,
            split=split,
            search=it == 0,
            total=start_sum if it == 0 else None,
        )
        if smooth and measured is None:
            measured = variance
        if smooth and measured is not None:
            # the smoother's weights are chosen afresh in the first two rounds only:
            # re-choosing its model every round let a 1024^2 movie's last frames flip by
            # 0.34 px between rounds
            smoothed, chosen = smooth_trajectory(new[0], measured[0], weights)
            new = smoothed[None]
            if it == 1:
                weights = chosen
        new = new - new[:, 0:1]
        # a patch that has stopped keeps its shifts; its variances are measured at them
        new[~active] = shifts[~active]
        change = (new - shifts).abs().amax(dim=(1, 2))
        active = active & (change > tolerance_px)
        shifts = new
        variance = measured if measured is not None else variance
        if not bool(active.any()):
            converged = True
            break
    if variance is None:  # every patch stopped before the last round
        _, variance = _measure(stack, shifts, frame_filters, split=split)  # with variances
    return shifts, cast(torch.Tensor, variance), used, converged


def _progressive_start(
    stack: SpectraStack,
    frame_filters: torch.Tensor | None,
    max_shift_px: float,
    coarse_step: float,
) -> torch.Tensor:
    """Starting shifts ``(F, 2)`` of the first patch: each image against the running sum of the
    images before it, aligned.

    A leave-one-out reference built from *unaligned* images holds the specimen at several
    positions at once; after a stage jump, the frames before it can lock onto the larger group
    after it and the iteration never recovers. A running reference has the specimen at one
    position, so the start is right even across jumps; the iteration then refines it.
    """
    spectra = stack.spectra[0]
    n = spectra.shape[0]
    shifts = torch.zeros((n, 2), dtype=torch.float64, device=spectra.device)
    reference = spectra[0].clone()
    # the integer search runs on a coarser grid than the crop's (every 4th px at most): its
    # inverse transform was most of this start's time at 4096^2 (2784^2 against 1024^2); the
    # exact sub-pixel search then starts within one coarse sample of the maximum
    grid = _coarse_grid(stack)
    step = max(coarse_step, stack.shape[0] / grid[0], stack.shape[1] / grid[1])
    for f in range(1, n):
        cross = (spectra[f] * reference.conj())[None]
        if frame_filters is not None:
            cross = cross * frame_filters[0, f]
        begin = coarse_peaks(
            crop_spectrum(cross, grid), grid, stack.shape, max_shift_px=max_shift_px
        )
        shifts[f] = stack.peaks(cross, start_px=begin, half_width_px=step)[0]
        reference = reference + spectra[f] * phase_ramp(-shifts[f : f + 1], stack.ky, stack.kx)[0]
    return shifts


#: the coarse integer search samples at least every this many original pixels
_COARSE_PX = 4


def _coarse_grid(stack: SpectraStack) -> tuple[int, int]:
    """Even grid ``(H', W')`` no finer than the crop, about every ``_COARSE_PX``-th pixel of
    the original image and at least 128 samples (or the crop) per side."""

    def side(full: int, crop: int) -> int:
        coarse = max(128, -(-full // _COARSE_PX))
        return min(crop, coarse + coarse % 2)

    return side(stack.shape[0], stack.crop[0]), side(stack.shape[1], stack.crop[1])
