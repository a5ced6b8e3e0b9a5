"""Dose weighting of aligned frames (Grant & Grigorieff, eLife 2015).

Frame ``f`` (0-based) ends at the accumulated dose ``D_f = pre_exposure + (f + 1) *
dose_per_frame`` (RELION's and MotionCor2's choice: the dose at the *end* of the frame). Its
spatial frequency ``k`` keeps the amplitude ``q_f(k) = exp(-D_f / (2 Ne(k)))``
(:func:`models.dose.dose_filter`). The weights

    w_f(k) = q_f(k) / sqrt(sum_g q_g(k)^2)

satisfy ``sum_f w_f(k)^2 = 1`` and lie in (0, 1]; that is exactly RELION's
``MotioncorrRunner::doseWeighting`` (its Eq. 9 normalisation). At ``k = 0`` nothing is damaged,
so RELION's weights there are ``1 / sqrt(F)`` and its dose-weighted sum has ``1 / sqrt(F)``
of the plain sum's mean. We multiply every weight by ``sqrt(F)`` when summing
(:func:`dose_weighted_scale`), so that the dose-weighted sum keeps the plain sum's mean
(counts per pixel, as MotionCor2's output does) while its spectral shape equals RELION's.
"""

from __future__ import annotations

import math

import torch

from causalscope.models.dose import dose_filter

__all__ = ["dose_weighted_scale", "dose_weights", "frame_end_doses_e_per_a2"]


def frame_end_doses_e_per_a2(
    n_frames: int, *, dose_per_frame_e_per_a2: float, pre_exposure_e_per_a2: float = 0.0
) -> torch.Tensor:
    """``(F,)`` float64 accumulated dose at the end of each frame."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if dose_per_frame_e_per_a2 <= 0 or pre_exposure_e_per_a2 < 0:
        raise ValueError(
            "need dose_per_frame_e_per_a2 > 0 and pre_exposure_e_per_a2 >= 0, got "
            f"{dose_per_frame_e_per_a2} and {pre_exposure_e_per_a2}"
        )
    frames = torch.arange(1, n_frames + 1, dtype=torch.float64)
    return pre_exposure_e_per_a2 + frames * dose_per_frame_e_per_a2


def dose_weights(
    frequency_per_angstrom: torch.Tensor,
    *,
    n_frames: int,
    dose_per_frame_e_per_a2: float,
    voltage_kv: float,
    pre_exposure_e_per_a2: float = 0.0,
) -> torch.Tensor:
    """``(F, *k.shape)`` weights ``w_f(k)`` with ``sum_f w_f^2 = 1`` (RELION's normalisation).

    ``voltage_kv`` must be 200 or 300 kV (Grant & Grigorieff's calibration); other voltages
    raise ``ValueError`` (:func:`models.dose.critical_exposure_e_per_a2`).
    """
    doses = frame_end_doses_e_per_a2(
        n_frames,
        dose_per_frame_e_per_a2=dose_per_frame_e_per_a2,
        pre_exposure_e_per_a2=pre_exposure_e_per_a2,
    ).to(device=frequency_per_angstrom.device, dtype=frequency_per_angstrom.dtype)
    q = dose_filter(frequency_per_angstrom, accumulated_dose_e_per_a2=doses, voltage_kv=voltage_kv)
    return q / torch.sqrt((q * q).sum(dim=0, keepdim=True))


def dose_weighted_scale(n_frames: int) -> float:
    """Factor ``sqrt(F)`` applied to :func:`dose_weights` so that the sum keeps the mean."""
    return math.sqrt(n_frames)
