"""Pick-level calibration: the probability that a peak of the logit map is a particle.

The PU risk makes the network's sigmoid a pixel-level probability ("a particle is centred
within a few canonical pixels"), which is lower at a peak than the chance that the peak is a
particle, because the centre is uncertain by a pixel or two. After training, the peaks of the
logit map on fully labelled micrographs are matched to the truth (within half a diameter)
and a logistic regression ``p = sigmoid(slope * logit + offset)`` is fitted to the outcome
(Platt 1999). The two numbers are stored in the network (:class:`~.network.PickerNet`
buffers), so ``p >= 0.5`` means "more likely a particle than not".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from causalscope.models.picking._common import find_peaks, interior
from causalscope.models.picking.learned.network import (
    CANONICAL_DIAMETER_PX,
    OUTPUT_STRIDE,
    PickerNet,
)
from causalscope.models.picking.matching import match_picks

__all__ = ["calibrate_picker", "fit_platt", "peak_outcomes"]

#: peaks below this uncalibrated probability are not candidates
_CANDIDATE_FLOOR = 0.01


def fit_platt(
    logits: np.ndarray, outcome: np.ndarray, *, iterations: int = 50
) -> tuple[float, float]:
    """``(slope, offset)`` maximising the Bernoulli likelihood of ``outcome`` (0/1) given
    ``sigmoid(slope * logits + offset)`` (Newton's method, a tiny ridge for separable data)."""
    x = np.stack([np.asarray(logits, dtype=np.float64), np.ones(len(logits))], axis=1)
    y = np.asarray(outcome, dtype=np.float64)
    if len(y) < 2 or y.min() == y.max():
        raise ValueError(f"need both outcomes among >= 2 peaks, got {int(y.sum())} of {len(y)}")
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (p - y) + 1e-6 * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def peak_outcomes(
    model: PickerNet, image: torch.Tensor, xy_canonical: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated logits at the candidate peaks of a canonical ``(h, w)`` image, and
    whether each matches a true centre (canonical px) within half a diameter."""
    parameter = next(model.parameters())
    with torch.inference_mode():
        logits = model.raw_logits(image.to(parameter.device, parameter.dtype)[None, None])[0, 0]
    logits = logits.float().cpu()
    half = 0.5 * CANONICAL_DIAMETER_PX / OUTPUT_STRIDE
    yx, _ = find_peaks(
        torch.sigmoid(logits),
        threshold=_CANDIDATE_FLOOR,
        min_distance_px=half,
        valid=interior(tuple(logits.shape), half, "cpu"),  # type: ignore[arg-type]
        max_picks=None,
    )
    xy = yx.flip(-1).to(torch.float64) * OUTPUT_STRIDE + (OUTPUT_STRIDE - 1) / 2.0
    match = match_picks(xy, xy_canonical, radius_px=0.5 * CANONICAL_DIAMETER_PX)
    outcome = np.zeros(len(xy))
    outcome[match.pairs[:, 0]] = 1.0
    return logits[yx[:, 0], yx[:, 1]].numpy().astype(np.float64), outcome


def calibrate_picker(
    model: PickerNet, micrographs: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, float, int]:
    """Fit and store the calibration from fully labelled ``(canonical image, truth xy)``
    pairs; returns ``(slope, offset, n_peaks)``."""
    parts = [peak_outcomes(model, image, xy) for image, xy in micrographs]
    logits = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    outcome = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    slope, offset = fit_platt(logits, outcome)
    model.set_calibration(slope, offset)
    return slope, offset, len(logits)
