"""Whole-frame (global) alignment of a movie.

Each frame is correlated with the sum of all *other* frames, each moved back by its current
shift (leave-one-out: a frame's own shot noise never correlates with itself, so the
reference does not pull the frame towards where it already is), after both are filtered by
``exp(-B k^2 / 4)``. The correlation's maximum is found exactly on the band-limited
correlation by DFT evaluation at sub-pixel points (no parabola through integer samples), and
the round repeats until no shift moves by more than ``tolerance_px``. Only the frequencies
where the filtered cross-spectrum ``exp(-B k^2 / 2)`` exceeds 3 % take part (a Fourier crop:
at 1 A/px and B = 80 A^2 three fifths of each axis), which makes a 4096^2 x 40 movie cheap.

Fixed-pattern noise (gain residuals, defect fill, the frame border) sits at the same detector
position in every frame, so against a leave-one-out reference it correlates at the *other*
frames' shifts, pulling each estimate towards the others. Each frame's own mean is removed
and its border tapered before the transform, so that the two largest fixed patterns (the
mean and the border step) carry no weight; white pixel-level gain errors are mostly removed
by the B filter (the residual bias of an uncorrected gain has not been measured yet).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.motion._align import (
    DamageModel,
    SpectraStack,
    align_stack,
    prepare_spectra,
)

__all__ = ["GLOBAL_BFACTOR_ANGSTROM2", "GlobalAlignment", "align_global"]

#: default B-factor (A^2) of the whole-frame alignment filter. Per-frame shifts of low-dose
#: frames are limited by shot noise; a weaker filter keeps more of the signal between 1/6 and
#: 1/3 A^-1: on simulated 1024^2 x 20 movies at 2 e/A^2 per frame the predicted per-frame
#: standard deviation falls from 0.17 px (B = 150) to 0.15 px (B = 80), for about 1.9x the
#: cropped spectrum (B = 50 gains little more for 3x).
GLOBAL_BFACTOR_ANGSTROM2 = 80.0
#: the halves' tolerance (px): they measure how well the trajectory reproduces, and start from
#: it; at 1024^2 x 20, 0.03 px puts their trajectories within 0.006 px of those at 0.01 px
#: for 0.20 s instead of 0.34 s (the whole movie keeps ``tolerance_px``)
HALVES_TOLERANCE_PX = 0.03


@dataclass(frozen=True)
class GlobalAlignment:
    """Result of :func:`align_global`.

    Attributes
    ----------
    shifts_px
        ``(F, 2)`` [x, y]: where the specimen sits in frame ``f`` relative to frame 0 (the
        simulator's convention); move frame ``f`` by ``-shifts_px[f]`` to align it.
        ``shifts_px[0] == [0, 0]``.
    iterations_used
        Rounds run.
    converged
        Whether the last round moved no shift by more than the tolerance.
    half_shifts_px
        With ``halves``: the even frames' and the odd frames' shifts ``(F_even, 2)`` and
        ``(F_odd, 2)``, each half aligned on its own (relative to its own first frame, frame
        0 or 1), as two independent measurements of the trajectory; else None.
    halves_s
        Seconds spent aligning the halves (0 without them).
    """

    shifts_px: np.ndarray
    iterations_used: int
    converged: bool
    half_shifts_px: tuple[np.ndarray, np.ndarray] | None = None
    halves_s: float = 0.0


def align_global(
    frames: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    bfactor_angstrom2: float = GLOBAL_BFACTOR_ANGSTROM2,
    iterations: int = 10,
    tolerance_px: float = 0.01,
    max_shift_px: float | None = None,
    dose_per_frame_e_per_a2: float | None = None,
    pre_exposure_e_per_a2: float = 0.0,
    voltage_kv: float | None = None,
    halves: bool = False,
    measured_weights: bool = True,
) -> GlobalAlignment:
    """Align the frames ``(F, h, w)`` of a movie (any real dtype; gain-corrected counts).

    Parameters
    ----------
    frames
        ``(F, h, w)`` frames, ``F >= 2``; the device of the computation.
    pixel_size_angstrom
        Pixel size, A.
    bfactor_angstrom2
        B-factor of the filter ``exp(-B k^2 / 4)`` applied to each spectrum, A^2.
    iterations, tolerance_px
        At most ``iterations`` rounds; stop when no shift changes by more than ``tolerance_px``.
    max_shift_px
        Largest shift searched in the first round (default a quarter of the smaller side).
    dose_per_frame_e_per_a2, pre_exposure_e_per_a2, voltage_kv
        When dose and voltage (200 or 300 kV) are given, each frame's correlation is also
        weighted by the amplitude radiation damage leaves at its mid-frame dose (a matched
        filter; on simulated 1024^2 x 20 movies it lowers the RMS error by about a third).
    halves
        Also align the even and the odd frames each on their own (``F >= 6``; the spectra are
        shared): :attr:`GlobalAlignment.half_shifts_px`. Each half starts from the whole
        movie's trajectory instead of a progressive start of its own and iterates to its own
        solution (at 1024^2 x 20: 0.38 -> 0.27 s for the two, within 0.003 px of a start of
        their own), to :data:`HALVES_TOLERANCE_PX` or ``tolerance_px`` if that is looser.
    measured_weights
        After the progressive start, weigh each frequency by the specimen's power measured on
        the movie's aligned sum instead of the fixed filter (:mod:`models.motion._weights`).
    """
    if frames.dim() != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (F >= 2, h, w), got shape {tuple(frames.shape)}")
    if pixel_size_angstrom <= 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")
    if bfactor_angstrom2 < 0:
        raise ValueError(f"bfactor_angstrom2 must be >= 0, got {bfactor_angstrom2}")
    if iterations < 1 or tolerance_px <= 0:
        raise ValueError(
            f"need iterations >= 1 and tolerance_px > 0, got {iterations}, {tolerance_px}"
        )
    h, w = frames.shape[-2:]
    stack = prepare_spectra(
        frames,
        pixel_size_angstrom=pixel_size_angstrom,
        bfactor_angstrom2=bfactor_angstrom2,
        taper_px=max(8, min(h, w) // 32),
    )
    limit = min(h, w) / 4.0 if max_shift_px is None else max_shift_px
    damage = damage_model(
        frames.shape[0],
        pixel_size_angstrom=pixel_size_angstrom,
        dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
        pre_exposure_e_per_a2=pre_exposure_e_per_a2,
        voltage_kv=voltage_kv,
    )
    shifts, _, used, converged = align_stack(
        stack,
        iterations=iterations,
        tolerance_px=tolerance_px,
        max_shift_px=limit,
        damage=damage,
        split=True,
        measured_weights=measured_weights,
    )
    half_shifts, halves_s = None, 0.0
    if halves and frames.shape[0] >= 6:  # two even frames inside the odd ones' span
        started = time.perf_counter()
        loose = max(tolerance_px, HALVES_TOLERANCE_PX)
        half_shifts = (
            _align_subset(stack, damage, 0, iterations, loose, limit, shifts[0], measured_weights),
            _align_subset(stack, damage, 1, iterations, loose, limit, shifts[0], measured_weights),
        )
        halves_s = time.perf_counter() - started
    return GlobalAlignment(shifts[0].cpu().numpy(), used, converged, half_shifts, halves_s)


def _align_subset(
    stack: SpectraStack,
    damage: DamageModel | None,
    start: int,
    iterations: int,
    tolerance_px: float,
    limit: float,
    whole: torch.Tensor | None = None,
    measured_weights: bool = False,
) -> np.ndarray:
    """Shifts of every second frame from ``start``, aligned among themselves only (from
    ``whole``'s shifts of those frames, when given)."""
    subset = dataclasses.replace(
        stack,
        spectra=stack.spectra[:, start::2],
        noise_power=stack.noise_power[:, start::2],
    )
    subset_damage = None
    if damage is not None:
        subset_damage = DamageModel(
            damage.mid_frame_dose_e_per_a2[start::2],
            damage.voltage_kv,
            damage.pixel_size_angstrom,
        )
    initial = None
    if whole is not None:
        initial = whole[start::2] - whole[start]
    shifts, _, _, _ = align_stack(
        subset,
        iterations=iterations,
        tolerance_px=tolerance_px,
        max_shift_px=limit,
        damage=subset_damage,
        initial_px=initial,
        split=True,
        measured_weights=measured_weights,
    )
    return shifts[0].cpu().numpy()


def damage_model(
    n_frames: int,
    *,
    pixel_size_angstrom: float,
    dose_per_frame_e_per_a2: float | None,
    pre_exposure_e_per_a2: float,
    voltage_kv: float | None,
) -> DamageModel | None:
    """The damage weighting used in the alignment, or None without dose and voltage."""
    if dose_per_frame_e_per_a2 is None or voltage_kv is None:
        return None
    if not (190 <= voltage_kv <= 310):
        return None  # Grant & Grigorieff is calibrated at 200 and 300 kV only
    mid = pre_exposure_e_per_a2 + (torch.arange(n_frames, dtype=torch.float64) + 0.5) * (
        dose_per_frame_e_per_a2
    )
    return DamageModel(mid, voltage_kv, pixel_size_angstrom)
