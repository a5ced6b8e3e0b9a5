"""One call from raw frames to corrected sums: :func:`correct_motion`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from causalscope.models.motion.accumulated import AccumulatedMotion, accumulated_motion
from causalscope.models.motion.gain import apply_gain_and_defects
from causalscope.models.motion.global_alignment import (
    GLOBAL_BFACTOR_ANGSTROM2,
    align_global,
    damage_model,
)
from causalscope.models.motion.local import (
    PATCH_BFACTOR_ANGSTROM2,
    LocalMotionModel,
    align_patches,
    fit_local_model,
)
from causalscope.models.motion.sums import corrected_sums

__all__ = ["MotionCorrection", "correct_motion"]


@dataclass
class MotionCorrection:
    """Everything :func:`correct_motion` produces.

    Attributes
    ----------
    aligned_sum
        ``(h, w)`` float32: global (Fourier) + local (bicubic) correction, no dose weighting.
    ctf_sum
        ``(h, w)`` float32: global shifts only (exact phase ramps), no weighting, so its noise
        stays white: the input of CTF estimation.
    ctf_sum_noise_variance
        Expected white-noise variance per pixel of ``ctf_sum`` for counting data: the mean over
        pixels of ``gain * ctf_sum`` (Poisson counts ``N`` scaled by the gain ``g`` have
        variance ``g^2 N = g * (g N)``; Fourier shifts preserve white variance). ``None`` when
        the input frames are not integer counts (no counting assumption possible).
    dose_weighted_sum, even_sum, odd_sum
        ``(h, w)`` float32 dose-weighted sums (all / even / odd frames, 0-based), with
        ``even_sum + odd_sum == dose_weighted_sum`` exactly; equal to the unweighted sums
        when ``dose_weighting`` is off.
    shifts_px
        ``(F, 2)`` global shifts [x, y] (specimen position in frame f relative to frame 0).
    local_model
        The local model, or ``None``.
    patch_positions_px, patch_shifts_px
        ``(P, 2)`` patch centres and ``(P, F, 2)`` residual patch trajectories (empty arrays
        without local alignment).
    accumulated
        RELION's accumulated motion of ``shifts_px``, Angstrom.
    n_hot_pixels, defect_mask, frame_means
        From the gain step: hot pixels found, ``(h, w)`` bool replaced pixels, ``(F,)`` mean
        corrected counts per frame.
    iterations_used
        Rounds of the global alignment.
    timings_s
        Seconds per stage: gain, global, halves (the even and odd frames' own global
        alignments; 0 without ``halves``), local, sums.
    half_shifts_px
        With ``halves``: the even and the odd frames' global shifts, each half aligned on
        its own (:attr:`models.motion.GlobalAlignment.half_shifts_px`); else None.
    """

    aligned_sum: torch.Tensor
    ctf_sum: torch.Tensor
    ctf_sum_noise_variance: float | None
    dose_weighted_sum: torch.Tensor
    even_sum: torch.Tensor
    odd_sum: torch.Tensor
    shifts_px: np.ndarray
    local_model: LocalMotionModel | None
    patch_positions_px: np.ndarray
    patch_shifts_px: np.ndarray
    accumulated: AccumulatedMotion
    n_hot_pixels: int
    defect_mask: torch.Tensor
    frame_means: np.ndarray
    iterations_used: int
    timings_s: dict[str, float] = field(default_factory=dict)
    half_shifts_px: tuple[np.ndarray, np.ndarray] | None = None


def _is_integer_dtype(frames: np.ndarray | torch.Tensor) -> bool:
    if isinstance(frames, np.ndarray):
        return bool(np.issubdtype(frames.dtype, np.integer))
    return not (frames.dtype.is_floating_point or frames.dtype.is_complex)


def _check_arguments(
    frames: np.ndarray | torch.Tensor,
    pixel_size_angstrom: float,
    voltage_kv: float,
    dose_per_frame_e_per_a2: float,
    pre_exposure_e_per_a2: float,
    dose_weighting: bool,
) -> None:
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (F >= 2, h, w), got shape {tuple(frames.shape)}")
    if pixel_size_angstrom <= 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")
    if dose_per_frame_e_per_a2 <= 0 or pre_exposure_e_per_a2 < 0:
        raise ValueError(
            "need dose_per_frame_e_per_a2 > 0 and pre_exposure_e_per_a2 >= 0, got "
            f"{dose_per_frame_e_per_a2} and {pre_exposure_e_per_a2}"
        )
    if dose_weighting and not (190 <= voltage_kv < 210 or 290 <= voltage_kv <= 310):
        raise ValueError(
            f"dose weighting is calibrated for 200 and 300 kV, got {voltage_kv} kV; "
            "pass dose_weighting=False"
        )


def _noise_variance(
    frames: np.ndarray | torch.Tensor,
    gain: np.ndarray | torch.Tensor | None,
    ctf_sum: torch.Tensor,
) -> float | None:
    """Per-pixel noise variance of ``gain * ctf_sum`` for integer (counted) frames, else None."""
    if not _is_integer_dtype(frames):
        return None
    if gain is None:
        return float(ctf_sum.mean())
    gain_t = torch.as_tensor(np.asarray(gain) if isinstance(gain, np.ndarray) else gain)
    gain_t = torch.nan_to_num(gain_t.to(ctf_sum.device, torch.float32))
    return float((gain_t * ctf_sum).mean())


def _local_motion(
    stack: torch.Tensor, shifts: np.ndarray, **align: Any
) -> tuple[LocalMotionModel, np.ndarray, np.ndarray]:
    """The local model fitted to the patches' shifts, the patch centres and their shifts."""
    measured = align_patches(stack, shifts, **align)
    model = fit_local_model(
        measured, shifts, image_shape=(int(stack.shape[-2]), int(stack.shape[-1]))
    )
    return model, measured.positions_px, measured.shifts_px


def correct_motion(
    frames: np.ndarray | torch.Tensor,
    *,
    pixel_size_angstrom: float,
    voltage_kv: float,
    dose_per_frame_e_per_a2: float,
    pre_exposure_e_per_a2: float = 0.0,
    gain: np.ndarray | torch.Tensor | None = None,
    defect_mask: np.ndarray | torch.Tensor | None = None,
    patches: tuple[int, int] = (5, 5),
    bfactor_angstrom2: float = GLOBAL_BFACTOR_ANGSTROM2,
    patch_bfactor_angstrom2: float = PATCH_BFACTOR_ANGSTROM2,
    iterations: int = 10,
    tolerance_px: float = 0.01,
    patch_iterations: int = 1,
    dose_weighting: bool = True,
    local: bool = True,
    device: torch.device | str | None = None,
    halves: bool = False,
) -> MotionCorrection:
    """Gain/defect correction, global and local alignment, corrected and dose-weighted sums.

    (Long for its parameters' descriptions; the body is one timed block per stage.)

    Parameters
    ----------
    frames
        ``(F, h, w)`` raw frames, numpy or torch, any int or float dtype (integer counts give
        a noise variance for the CTF sum). Numpy frames go one at a time to ``device``.
    pixel_size_angstrom, voltage_kv, dose_per_frame_e_per_a2, pre_exposure_e_per_a2
        Optics and exposure. Dose weighting needs 200 or 300 kV: other voltages raise
        ``ValueError`` unless ``dose_weighting=False``.
    gain, defect_mask
        ``(h, w)`` multiplicative gain reference and bool defect map (optional).
    patches
        ``(rows, columns)`` of the local alignment grid.
    bfactor_angstrom2, iterations, tolerance_px
        Alignment filter and stopping rule (see :func:`models.motion.align_global`).
    patch_bfactor_angstrom2, patch_iterations
        Filter and rounds of the patch alignment (see :func:`models.motion.align_patches`).
    dose_weighting, local
        Switch dose weighting and local motion correction.
    halves
        Also align the even and the odd frames each on their own (Delta-Repro's drift).
    device
        Where to compute; default the device of ``gain`` (if a tensor), of ``frames`` (if a
        tensor), else CPU.
    """
    _check_arguments(
        frames,
        pixel_size_angstrom,
        voltage_kv,
        dose_per_frame_e_per_a2,
        pre_exposure_e_per_a2,
        dose_weighting,
    )
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    corrected = apply_gain_and_defects(frames, gain=gain, defect_mask=defect_mask, device=device)
    stack = corrected.frames
    n_frames = stack.shape[0]
    timings["gain"] = time.perf_counter() - clock

    clock = time.perf_counter()
    alignment = align_global(
        stack,
        pixel_size_angstrom=pixel_size_angstrom,
        bfactor_angstrom2=bfactor_angstrom2,
        iterations=iterations,
        tolerance_px=tolerance_px,
        dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
        pre_exposure_e_per_a2=pre_exposure_e_per_a2,
        voltage_kv=voltage_kv,
        halves=halves,
    )
    shifts = alignment.shifts_px
    # the halves' own alignments (for Delta-Repro) apart: the peers' chain has none
    timings["global"] = time.perf_counter() - clock - alignment.halves_s
    timings["halves"] = alignment.halves_s

    clock = time.perf_counter()
    model, positions, patch_shifts = None, np.zeros((0, 2)), np.zeros((0, n_frames, 2))
    if local:
        damage = damage_model(
            n_frames,
            pixel_size_angstrom=pixel_size_angstrom,
            dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
            pre_exposure_e_per_a2=pre_exposure_e_per_a2,
            voltage_kv=voltage_kv,
        )
        model, positions, patch_shifts = _local_motion(
            stack,
            shifts,
            patches=patches,
            pixel_size_angstrom=pixel_size_angstrom,
            bfactor_angstrom2=patch_bfactor_angstrom2,
            iterations=patch_iterations,
            tolerance_px=tolerance_px,
            damage=damage,
        )
    timings["local"] = time.perf_counter() - clock

    clock = time.perf_counter()
    sums = corrected_sums(
        stack,
        shifts,
        pixel_size_angstrom=pixel_size_angstrom,
        local_model=model,
        dose_per_frame_e_per_a2=dose_per_frame_e_per_a2 if dose_weighting else None,
        pre_exposure_e_per_a2=pre_exposure_e_per_a2,
        voltage_kv=voltage_kv if dose_weighting else None,
    )
    noise_variance = _noise_variance(frames, gain, sums.ctf_sum)
    timings["sums"] = time.perf_counter() - clock
    del stack
    return MotionCorrection(
        aligned_sum=sums.aligned_sum,
        ctf_sum=sums.ctf_sum,
        ctf_sum_noise_variance=noise_variance,
        dose_weighted_sum=sums.dose_weighted_sum,
        even_sum=sums.even_sum,
        odd_sum=sums.odd_sum,
        shifts_px=shifts,
        local_model=model,
        patch_positions_px=positions,
        patch_shifts_px=patch_shifts,
        accumulated=accumulated_motion(
            shifts,
            pixel_size_angstrom=pixel_size_angstrom,
            dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
            pre_exposure_e_per_a2=pre_exposure_e_per_a2,
        ),
        n_hot_pixels=corrected.n_hot_pixels,
        defect_mask=corrected.defect_mask,
        frame_means=corrected.frame_means,
        iterations_used=alignment.iterations_used,
        timings_s=timings,
        half_shifts_px=alignment.half_shifts_px,
    )
