"""Picking with a trained :class:`~.network.PickerNet`: probability map, NMS, threshold.

The probability that a particle is centred at each output pixel is the sigmoid of the
network's logit (the PU risk estimates the positive-versus-negative logistic risk, so these
behave like probabilities). Picks are its local maxima, kept greedily in order of probability
at least ``min_distance_diameters`` diameters apart (0.5 by default, so touching particles,
whose centres are about one diameter apart, give separate picks), at least half a diameter
from every border, with probability ``>= threshold``. By default the threshold is automatic:
the model's calibrated cut, lowered on a micrograph whose own peaks show many more particles
than that cut keeps, to where the peaks darker than the ice outnumber the background
(:func:`~.calibration.micrograph_cut`). The cut applied is in :attr:`Picks.threshold`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from causalscope.models.picking._common import find_peaks, interior
from causalscope.models.picking.learned.calibration import contrast_map, micrograph_cut
from causalscope.models.picking.learned.network import OUTPUT_STRIDE, PickerNet
from causalscope.models.picking.learned.preprocess import canonical_micrograph
from causalscope.models.picking.picks import Picks

__all__ = [
    "DEFAULT_THRESHOLD",
    "logit_map",
    "peaks_from_probability",
    "pick_learned",
    "picks_from_logits",
    "probability_map",
    "refined",
]

#: the cut on the probability at a peak of :func:`peaks_from_probability`: "more likely a
#: particle than not"
DEFAULT_THRESHOLD = 0.5
#: map pixels around a peak whose probabilities place the pick (about the positive radius of
#: training, 4.5 canonical px, in map pixels)
REFINE_RADIUS = 2


def logit_map(
    model: PickerNet, image: torch.Tensor, *, diameter_px: float
) -> tuple[torch.Tensor, float]:
    """``(h'', w'')`` calibrated logits and the scale (canonical px per input px), for an
    ``(h, w)`` image.

    Map pixel ``(i, j)`` is centred at input pixel ``((s * j + o + 0.5) / scale - 0.5, ...)``
    for ``x`` (``s`` the output stride, ``o = (s - 1) / 2``); :func:`pick_learned` does that.
    """
    canonical, scale = canonical_micrograph(image, diameter_px=diameter_px)
    return _logits(model, canonical), scale


def _logits(model: PickerNet, canonical: torch.Tensor) -> torch.Tensor:
    """Calibrated float32 logits of a canonical ``(h, w)`` image."""
    parameter = next(model.parameters())
    with torch.inference_mode():
        logits = model(canonical.to(parameter.device, parameter.dtype)[None, None])[0, 0]
    return logits.to(torch.float32)


def probability_map(
    model: PickerNet, image: torch.Tensor, *, diameter_px: float
) -> tuple[torch.Tensor, float]:
    """:func:`logit_map` as probabilities."""
    logits, scale = logit_map(model, image, diameter_px=diameter_px)
    return torch.sigmoid(logits), scale


def pick_learned(
    image: torch.Tensor,
    model: PickerNet,
    *,
    diameter_px: float,
    threshold: float | str = "auto",
    min_distance_diameters: float = 0.5,
    border_diameters: float = 0.5,
    max_picks: int | None = None,
    counted: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ice_free: torch.Tensor | None = None,
) -> Picks:
    """Particle centres in an ``(h, w)`` micrograph (any real dtype; PNG and MRC alike).

    Scores are the probabilities at the picks. ``threshold="auto"`` is the model's stored
    cut, half its best held-out F1 (:mod:`.calibration`; 0.5 for an uncalibrated model),
    lowered where the micrograph's own peaks ask for it (:func:`~.calibration.micrograph_cut`);
    where it drops to, the particles are counted on the peaks at the ``(n, 2)`` input-pixel
    positions where ``counted`` is true (default all; the live path leaves out the areas not
    to pick, whose dense contamination darkens the peaks on and beside it as particles do).
    ``ice_free`` ``(h, w)`` bool marks the areas without ice (the exclusion mask's ``thin``),
    whose background is measured apart from the ice's (:func:`~.preprocess.background`). Raises
    ``ValueError`` for a non-2D image, a diameter below 4 px or larger than the image, or an
    ``ice_free`` of another shape.
    """
    if image.ndim != 2:
        raise ValueError(f"image must be (h, w), got shape {tuple(image.shape)}")
    if not 4.0 <= diameter_px <= min(image.shape):
        raise ValueError(
            f"diameter_px must lie in [4, {min(image.shape)}] for a {tuple(image.shape)} image, "
            f"got {diameter_px:g}"
        )
    if isinstance(threshold, str) and threshold != "auto":
        raise ValueError(f'threshold must be a probability or "auto", got {threshold!r}')
    if not isinstance(threshold, str) and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability, got {threshold}")
    if not torch.isfinite(image).all():
        raise ValueError("image has non-finite values")
    canonical, scale = canonical_micrograph(image, diameter_px=diameter_px, ice_free=ice_free)
    logits = _logits(model, canonical)
    if threshold != "auto":
        return peaks_from_probability(
            torch.sigmoid(logits),
            scale=scale,
            diameter_px=diameter_px,
            threshold=float(threshold),
            min_distance_diameters=min_distance_diameters,
            border_diameters=border_diameters,
            max_picks=max_picks,
        )
    return picks_from_logits(
        logits,
        canonical,
        scale=scale,
        diameter_px=diameter_px,
        calibrated_threshold=model.threshold(),
        min_distance_diameters=min_distance_diameters,
        border_diameters=border_diameters,
        max_picks=max_picks,
        counted=counted,
    )


def picks_from_logits(
    logits: torch.Tensor,
    canonical: torch.Tensor,
    *,
    scale: float,
    diameter_px: float,
    calibrated_threshold: float,
    min_distance_diameters: float = 0.5,
    border_diameters: float = 0.5,
    max_picks: int | None = None,
    counted: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Picks:
    """:func:`pick_learned`'s automatic threshold on the logits of the ``canonical`` image they
    were computed from: every peak, then the cut of :func:`~.calibration.micrograph_cut` from
    the model's ``calibrated_threshold`` (a probability), its particles counted on the peaks
    ``counted`` keeps."""
    xy, peak_logits, yx = _peaks(
        logits,
        probability=torch.sigmoid(logits),
        scale=scale,
        diameter_px=diameter_px,
        floor=-math.inf,
        min_distance_diameters=min_distance_diameters,
        border_diameters=border_diameters,
    )

    def counted_peaks() -> tuple[torch.Tensor, torch.Tensor]:
        contrast = contrast_map(canonical.to(logits.device))[yx[:, 0], yx[:, 1]].cpu()
        if counted is None:
            return peak_logits, contrast
        inside = counted(xy).cpu()
        return peak_logits[inside], contrast[inside]

    calibrated = min(max(calibrated_threshold, 1e-12), 1.0 - 1e-12)
    cut = micrograph_cut(peak_logits, math.log(calibrated / (1.0 - calibrated)), counted_peaks)
    keep = peak_logits >= cut
    xy, peak_logits = xy[keep][:max_picks], peak_logits[keep][:max_picks]
    return Picks(xy, torch.sigmoid(peak_logits), threshold=1.0 / (1.0 + math.exp(-cut)))


def _peaks(
    score: torch.Tensor,
    *,
    probability: torch.Tensor,
    scale: float,
    diameter_px: float,
    floor: float,
    min_distance_diameters: float,
    border_diameters: float,
    max_picks: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(xy, scores, yx)``: local maxima of a ``score`` map ``>= floor`` (best first, float64
    on the CPU), kept by greedy NMS and away from the border, placed at the centroid of the
    ``probability`` map around them (:func:`refined`) and given in input pixels; ``yx`` are
    their integer map pixels, on the map's device."""
    step = OUTPUT_STRIDE / scale  # input px per map pixel
    edge = border_diameters * diameter_px / step
    yx, scores = find_peaks(
        score,
        threshold=floor - 1e-7 if math.isfinite(floor) else floor,
        min_distance_px=max(1.0, min_distance_diameters * diameter_px / step),
        valid=interior(tuple(score.shape), edge, score.device),  # type: ignore[arg-type]
        max_picks=max_picks,
    )
    centres = refined(probability, yx)
    offset = (OUTPUT_STRIDE - 1) / 2.0
    xy = (centres.flip(-1) * OUTPUT_STRIDE + offset + 0.5) / scale - 0.5
    return xy, scores.to(torch.float64).cpu(), yx


def refined(probability: torch.Tensor, yx: torch.Tensor) -> torch.Tensor:
    """``(n, 2)`` float64 (CPU) map positions: the centroid of ``probability`` ``(h, w)`` over
    the ``(2r + 1)^2`` pixels around each of the integer peaks ``yx`` (``r`` =
    :data:`REFINE_RADIUS`; pixels beyond the map count as zero)."""
    r = REFINE_RADIUS
    padded = torch.nn.functional.pad(probability.to(torch.float64)[None, None], (r, r, r, r))[0, 0]
    i, j = yx[:, 0].long() + r, yx[:, 1].long() + r
    total = torch.zeros(len(yx), dtype=torch.float64, device=probability.device)
    moment = torch.zeros(len(yx), 2, dtype=torch.float64, device=probability.device)
    for di in range(-r, r + 1):
        for dj in range(-r, r + 1):
            w = padded[i + di, j + dj]
            total += w
            moment[:, 0] += w * di
            moment[:, 1] += w * dj
    shift = moment / total.clamp(min=1e-300)[:, None]
    return (yx.to(torch.float64) + shift).cpu()


def peaks_from_probability(
    probability: torch.Tensor,
    *,
    scale: float,
    diameter_px: float,
    threshold: float = DEFAULT_THRESHOLD,
    min_distance_diameters: float = 0.5,
    border_diameters: float = 0.5,
    max_picks: int | None = None,
) -> Picks:
    """Picks in input pixels from a :func:`probability_map` ``(h'', w'')`` and its ``scale``
    (canonical px per input px): local maxima ``>= threshold``, greedy NMS at
    ``min_distance_diameters``, none within ``border_diameters`` of the border."""
    xy, scores, _ = _peaks(
        probability,
        probability=probability,
        scale=scale,
        diameter_px=diameter_px,
        floor=threshold,
        min_distance_diameters=min_distance_diameters,
        border_diameters=border_diameters,
        max_picks=max_picks,
    )
    return Picks(xy, scores, threshold=threshold)
