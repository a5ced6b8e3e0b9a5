"""Pick-level calibration: the probability that a peak of the logit map is a particle.

The PU risk makes the network's sigmoid a pixel-level probability ("a particle is centred
within a few canonical pixels"), which is lower at a peak than the chance that the peak is a
particle, because the centre is uncertain by a pixel or two. After training, the peaks of the
logit map on fully labelled micrographs are matched to the truth (within half a diameter)
and a logistic regression ``p = sigmoid(slope * logit + offset)`` is fitted to the outcome
(Platt 1999), on rows that training never saw when it held some out (peaks measured on the
crops the network was fitted to are over-confident, so a calibration from them cuts too
high). The two numbers are stored in the network (:class:`~.network.PickerNet`
buffers), so ``p >= 0.5`` means "more likely a particle than not". Picking for F1 wants a
lower cut: for calibrated scores the F1-optimal cut is half the best F1 (Lipton et al. 2014),
so the automatic threshold is half the best F1 on the same held-out peaks (:func:`best_f1`),
stored beside the calibration. The best F1 is a maximum of a flat curve and moves little
between trainings; where along that curve it is reached moves a lot. Taken as that place, the
cut of four trainings of the shipped recipe (seeds, with and without smoothed crops) lay
between p 0.33 and 0.56, and a cut of 0.56 kept too few particles on one EMPIAR-10028
micrograph for the count below to agree (F1 0.57 there). Half the best F1 of ten such
trainings lay between 0.41 and 0.43.

On a data set unlike the training sets the network is under-confident: its particles peak at
lower logits and the calibrated cut keeps few of them (the shipped model, which never saw
EMPIAR-10059: 22 % of its particles). Each micrograph therefore also checks the cut against
its own peaks (:func:`micrograph_cut`): a two-component Gaussian mixture of the peak logits
(:func:`~models.picking._threshold.bimodality`) estimates how many peaks are particles (the sum
of the upper component's posteriors). The mixture counts only when the peaks are clearly
bimodal (two well-separated groups), the upper group is not most of them and the network scores
it near its calibrated cut: on a sparse micrograph with a single broad spread of background
peaks, beside an ice ball or a crack whose own peaks form a low group of their own, or on ice
without particles whose background peaks happen to split in two, it would count background as
particles. When the calibrated cut keeps clearly fewer peaks than that estimate (below
:data:`COUNT_AGREEMENT` of it), the cut drops. It never rises above the calibrated cut.

Where it drops to is read from the image, not from the logits: a particle only darkens the
ice it sits in, while a background peak is as likely to lie on a brighter patch of ice as on a
darker one. So among the peaks above a cut, the background ones number about twice those whose
local mean (:func:`contrast_map`) is brighter than the ice, and the rest are particles
(:func:`mirrored_cut`); the cut is the one of highest F1 under that count. The logits'
mixture places the cut where its Gaussian upper group ends, but an under-confident network's
particles trail far into the background's logits: on EMPIAR-10059 never seen the mixture's
cut kept 380-420 peaks per micrograph (F1 0.60-0.70, mean 0.66) where the best cut keeps
640-720 (0.72-0.79, mean 0.76); the mirrored count keeps 600-690 (F1 0.71-0.79, mean 0.76).
That count rests on the background peaks lying either side of the ice; where most of them lie
on darker ice it takes them for particles, so it must not outnumber the mixture's count by more
than :data:`MAX_COUNT_RATIO` (on EMPIAR-10059 it is 1.65-2.08 times it; on one simulated clean
micrograph of 74 tried, 3.3 times, and the cut that followed kept 139 picks for 24 particles).
Nor is anything counted where clearly more than half of the peaks are brighter than the zero,
which the premise forbids (:data:`MIN_COUNT_Z`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from causalscope.models.picking._common import find_peaks, interior
from causalscope.models.picking._threshold import bimodality
from causalscope.models.picking.learned.network import (
    CANONICAL_DIAMETER_PX,
    OUTPUT_STRIDE,
    PickerNet,
)
from causalscope.models.picking.learned.preprocess import gaussian_blur
from causalscope.models.picking.matching import match_picks

__all__ = [
    "COUNT_AGREEMENT",
    "MAX_COUNT_RATIO",
    "MIN_COUNT_Z",
    "best_f1",
    "calibrate_picker",
    "contrast_map",
    "fit_platt",
    "micrograph_cut",
    "mirrored_cut",
    "peak_outcomes",
]

#: peaks below this uncalibrated probability are not candidates
_CANDIDATE_FLOOR = 0.01
#: the calibrated cut stands while it keeps at least this share of the particles that the
#: micrograph's own peak mixture expects (on micrographs of the training data sets it keeps
#: 85-104 % of them; trained without EMPIAR-10059, 30-66 % of those)
COUNT_AGREEMENT = 0.8
#: fewer peaks than this are not fitted; the calibrated cut stands
MIN_PEAKS_TO_FIT = 20
#: a Platt slope above this (per uncalibrated logit) is a fit to separable outcomes, whose
#: likelihood has no maximum: refused (the shipped picker's: 2.1)
MAX_PLATT_SLOPE = 50.0
#: the upper group must hold at most this share of the peaks to count as the particles: peaks
#: are kept half a diameter apart, so even a packed field (EMPIAR-10059: 45 % of the peaks are
#: particles, the mixture's upper group 23-28 %) has about as many peaks between its particles;
#: a larger upper group is the clean ice beside contamination (ice balls, cracks: 93-96 %),
#: whose own peaks form the lower group
MAX_PARTICLE_SHARE = 0.5
#: and its mean must lie at most this many logits below the calibrated cut: peaks the network
#: scores as near-particles (EMPIAR-10059 never seen: 0.1-1.7 below), not a second group of
#: background (a simulated micrograph of ice alone: 4.9 below)
MAX_UPPER_BELOW_CUT = 3.0
#: the particles that :func:`mirrored_cut` counts may outnumber those the mixture expects by
#: at most this factor: on EMPIAR-10059 never seen, whose particles trail far into the
#: background's logits, 1.65-2.08; on a simulated clean micrograph at 12 e/A^2 (44 nm of ice,
#: seed 11), whose background peaks lie on darker ice, 3.3 (137 counted for 24 particles: F1
#: 0.29, at the calibrated cut 0.94)
MAX_COUNT_RATIO = 2.5
#: the local mean of :func:`contrast_map`: a Gaussian of a fifth of the diameter (canonical
#: px), about the particle's core (on EMPIAR-10059 never seen, a sixth to a quarter gave the
#: same F1 within 0.005)
CONTRAST_SIGMA_PX = CANONICAL_DIAMETER_PX / 5.0
#: the particles counted above the chosen cut must exceed this many standard deviations of
#: the count without any particle (each peak brighter or darker by a coin toss: a spread of
#: sqrt(peaks)); on 2,000 random sets of 100-1,300 such peaks 0.2-0.6 % passed at 3.5 (1-3 %
#: at 3, as a random walk's excursions reach). The same margin refutes the count's premise: with
#: the background either side of the ice and the particles darker, at most half of all the
#: peaks are brighter; more than half by this many standard deviations (sqrt(peaks) / 2) means
#: the zero is not the background's middle, and nothing is counted (two simulated micrographs of
#: 208 with aggregates at 12 e/A^2, where the aggregates leave the clean ice above the image's
#: zero: 70 and 77 % of the counted peaks brighter, and the count's cut kept 101 and 99 peaks
#: for 36 and 16 particles; EMPIAR-10059 never seen: 35-39 %)
MIN_COUNT_Z = 3.5


def fit_platt(
    logits: np.ndarray, outcome: np.ndarray, *, iterations: int = 50
) -> tuple[float, float]:
    """``(slope, offset)`` maximising the Bernoulli likelihood of ``outcome`` (0/1) given
    ``sigmoid(slope * logits + offset)`` (Newton's method, a tiny ridge). Raises
    ``ValueError`` with one outcome only, or where the logits separate the outcomes (or rank
    them backwards): a slope beyond ``(0,`` :data:`MAX_PLATT_SLOPE` ``]``."""
    x = np.stack([np.asarray(logits, dtype=np.float64), np.ones(len(logits))], axis=1)
    y = np.asarray(outcome, dtype=np.float64)
    if len(y) < 2 or y.min() == y.max():
        raise ValueError(f"need both outcomes among >= 2 peaks, got {int(y.sum())} of {len(y)}")
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -500.0, 500.0)))
        gradient = x.T @ (p - y) + 1e-6 * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if not np.isfinite(w).all() or abs(w[0]) > 1e3 * MAX_PLATT_SLOPE:
            break
        if np.abs(step).max() < 1e-9:
            break
    if not np.isfinite(w).all() or not 0.0 < w[0] <= MAX_PLATT_SLOPE:
        raise ValueError(
            f"no calibration: the logits separate the {len(y)} peaks' outcomes or rank them "
            f"backwards (slope {w[0]:.3g})"
        )
    return float(w[0]), float(w[1])


def peak_outcomes(
    model: PickerNet, image: torch.Tensor, xy_canonical: torch.Tensor, *, from_row: int = 0
) -> tuple[np.ndarray, np.ndarray, int]:
    """Uncalibrated logits at the candidate peaks of a canonical ``(h, w)`` image, whether
    each matches a true centre (canonical px) within half a diameter, and the number of true
    centres; only peaks and centres at or below output-map row ``from_row``."""
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
    yx = yx[yx[:, 0] >= from_row]
    xy = yx.flip(-1).to(torch.float64) * OUTPUT_STRIDE + (OUTPUT_STRIDE - 1) / 2.0
    truth = xy_canonical[xy_canonical[:, 1] >= OUTPUT_STRIDE * from_row - 0.5]
    match = match_picks(xy, truth, radius_px=0.5 * CANONICAL_DIAMETER_PX)
    outcome = np.zeros(len(xy))
    outcome[match.pairs[:, 0]] = 1.0
    return logits[yx[:, 0], yx[:, 1]].numpy().astype(np.float64), outcome, len(truth)


def best_f1(probability: np.ndarray, outcome: np.ndarray, n_truth: int) -> float:
    """The highest F1 against ``n_truth`` true particles of the peaks with ``p >= t``, over the
    cuts ``t`` among ``probability`` (``outcome``: 1 where a peak is one; peaks of equal ``p``
    are kept or dropped together)."""
    if len(probability) == 0 or n_truth < 1:
        raise ValueError(f"need peaks and truth, got {len(probability)} and {n_truth}")
    order = np.argsort(-np.asarray(probability, dtype=np.float64), kind="stable")
    p = np.asarray(probability, dtype=np.float64)[order]
    tp = np.cumsum(np.asarray(outcome, dtype=np.float64)[order])
    f1 = 2.0 * tp / (np.arange(1, len(p) + 1) + n_truth)
    last_of_tie = np.r_[p[1:] != p[:-1], True]  # a cut keeps every peak of equal p
    return float(np.max(np.where(last_of_tie, f1, 0.0)))


def calibrate_picker(
    model: PickerNet,
    micrographs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    from_rows: Sequence[int] | None = None,
) -> tuple[float, float, int]:
    """Fit and store the calibration from fully labelled ``(canonical image, truth xy)``
    pairs, on output-map rows from ``from_rows`` (one per micrograph; default all rows);
    also stores the automatic cut, half the best F1 there (module docstring); returns
    ``(slope, offset, n_peaks)``."""
    rows = list(from_rows) if from_rows is not None else [0] * len(micrographs)
    parts = [
        peak_outcomes(model, image, xy, from_row=row)
        for (image, xy), row in zip(micrographs, rows, strict=True)
    ]
    logits = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    outcome = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    slope, offset = fit_platt(logits, outcome)
    probability = 1.0 / (1.0 + np.exp(-(slope * logits + offset)))
    threshold = 0.5 * best_f1(probability, outcome, sum(p[2] for p in parts))
    model.set_calibration(slope, offset, threshold)
    return slope, offset, len(logits)


def contrast_map(canonical: torch.Tensor) -> torch.Tensor:
    """The local mean of a canonical ``(h, w)`` image (a Gaussian of :data:`CONTRAST_SIGMA_PX`)
    on the pixels of its logit map, ``(h // 2, w // 2)``: below zero (the image's median, the
    ice) where the image is darker, as particles make it."""
    blurred = gaussian_blur(canonical.to(torch.float32), CONTRAST_SIGMA_PX)
    return F.avg_pool2d(blurred[None, None], OUTPUT_STRIDE)[0, 0]


def mirrored_cut(peak_logits: torch.Tensor, peak_contrast: torch.Tensor) -> float | None:
    """The cut (one of ``peak_logits``) of highest F1 when, above each cut, the background
    peaks are counted as twice those brighter than the ice (``peak_contrast > 0``, from
    :func:`contrast_map`) and the rest are particles (module docstring); ``None`` when the
    particles counted above it are within :data:`MIN_COUNT_Z` standard deviations of none."""
    return _mirrored(peak_logits, peak_contrast)[0]


def _mirrored(peak_logits: torch.Tensor, peak_contrast: torch.Tensor) -> tuple[float | None, float]:
    """:func:`mirrored_cut` and the particles counted in all (the count's maximum); ``None``
    and 0 when the peaks refute the count's premise (:data:`MIN_COUNT_Z`)."""
    x = peak_logits.detach().to(torch.float64).flatten().cpu()
    contrast = peak_contrast.detach().to(torch.float64).flatten().cpu()
    if contrast.numel() != x.numel():
        raise ValueError(f"{x.numel()} peak logits but {contrast.numel()} contrasts")
    order = torch.argsort(x, descending=True)
    kept = torch.arange(1, x.numel() + 1, dtype=torch.float64)
    brighter = torch.cumsum((contrast[order] > 0).to(torch.float64), 0)
    if x.numel() and float(brighter[-1]) > x.numel() / 2 + MIN_COUNT_Z * math.sqrt(x.numel()) / 2:
        return None, 0.0  # more than half brighter: the background is not either side of zero
    particles = kept - torch.minimum(2.0 * brighter, kept)
    expected = float(particles.max()) if x.numel() else 0.0
    if expected <= 0:
        return None, 0.0
    best = int(torch.argmax(2.0 * particles / (kept + expected)))
    if particles[best] < MIN_COUNT_Z * math.sqrt(best + 1):
        return None, expected
    return float(x[order][best]), expected


def micrograph_cut(
    peak_logits: torch.Tensor,
    calibrated_logit: float,
    counted_peaks: Callable[[], tuple[torch.Tensor, torch.Tensor]],
) -> float:
    """The automatic cut, as a logit, for one micrograph's ``(n,)`` calibrated peak logits;
    ``counted_peaks()`` gives the logits and local means (:func:`contrast_map`) of those the
    count is made on (all, or those outside the areas not to pick), asked for only where the
    cut may drop.

    ``calibrated_logit`` (the model's stored cut) unless the peak logits are clearly bimodal
    (:attr:`~models.picking._threshold.Bimodality.bimodal`), their upper group holds at most
    :data:`MAX_PARTICLE_SHARE` of them and lies within :data:`MAX_UPPER_BELOW_CUT` of the
    calibrated cut, and the calibrated cut keeps fewer than :data:`COUNT_AGREEMENT` of the
    particles their mixture expects; then :func:`mirrored_cut`, if lower and if its count of
    the particles is at most :data:`MAX_COUNT_RATIO` times the mixture's (module docstring).
    """
    x = peak_logits.detach().to(torch.float64).flatten().cpu()
    if x.numel() < MIN_PEAKS_TO_FIT:
        return calibrated_logit
    fit = bimodality(x)
    if (
        not fit.bimodal
        or fit.weights[1] > MAX_PARTICLE_SHARE
        or fit.means[1] < calibrated_logit - MAX_UPPER_BELOW_CUT
    ):
        return calibrated_logit
    expected = float(fit.upper_posterior(x).sum())
    if int((x >= calibrated_logit).sum()) >= COUNT_AGREEMENT * expected:
        return calibrated_logit
    cut, counted = _mirrored(*counted_peaks())
    if cut is None or counted > MAX_COUNT_RATIO * expected:
        return calibrated_logit
    return min(calibrated_logit, cut)
