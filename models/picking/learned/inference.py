"""Picking with a trained :class:`~.network.PickerNet`: probability map, NMS, threshold.

The probability that a particle is centred at each output pixel is the sigmoid of the
network's logit (the PU risk estimates the positive-versus-negative logistic risk, so these
behave like probabilities). Picks are its local maxima, kept greedily in order of probability
at least ``min_distance_diameters`` diameters apart (0.5 by default, so touching particles,
whose centres are about one diameter apart, give separate picks), at least half a diameter
from every border, with probability ``>= threshold`` (by default the model's automatic cut,
:mod:`.calibration`).
"""

from __future__ import annotations

import torch

from causalscope.models.picking._common import find_peaks, interior
from causalscope.models.picking.learned.network import OUTPUT_STRIDE, PickerNet
from causalscope.models.picking.learned.preprocess import canonical_micrograph
from causalscope.models.picking.picks import Picks

__all__ = ["DEFAULT_THRESHOLD", "peaks_from_probability", "pick_learned", "probability_map"]

#: the cut on the probability at a peak of :func:`peaks_from_probability`: "more likely a
#: particle than not"
DEFAULT_THRESHOLD = 0.5


def probability_map(
    model: PickerNet, image: torch.Tensor, *, diameter_px: float
) -> tuple[torch.Tensor, float]:
    """``(h'', w'')`` probabilities and input pixels per map pixel, for an ``(h, w)`` image.

    Map pixel ``(i, j)`` is centred at input pixel ``((s * j + o + 0.5) / scale - 0.5, ...)``
    for ``x`` (``s`` the output stride, ``o = (s - 1) / 2``); :func:`pick_learned` does that.
    """
    parameter = next(model.parameters())
    canonical, scale = canonical_micrograph(image, diameter_px=diameter_px)
    with torch.inference_mode():
        logits = model(canonical.to(parameter.device, parameter.dtype)[None, None])[0, 0]
    return torch.sigmoid(logits).to(torch.float32), scale


def pick_learned(
    image: torch.Tensor,
    model: PickerNet,
    *,
    diameter_px: float,
    threshold: float | str = "auto",
    min_distance_diameters: float = 0.5,
    border_diameters: float = 0.5,
    max_picks: int | None = None,
) -> Picks:
    """Particle centres in an ``(h, w)`` micrograph (any real dtype; PNG and MRC alike).

    Scores are the probabilities at the picks. ``threshold="auto"`` is the model's stored
    F1-maximising cut (:mod:`.calibration`; 0.5 for an uncalibrated model). Raises
    ``ValueError`` for a non-2D image, a diameter below 4 px or larger than the image.
    """
    if image.ndim != 2:
        raise ValueError(f"image must be (h, w), got shape {tuple(image.shape)}")
    if not 4.0 <= diameter_px <= min(image.shape):
        raise ValueError(
            f"diameter_px must lie in [4, {min(image.shape)}] for a {tuple(image.shape)} image, "
            f"got {diameter_px:g}"
        )
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ValueError(f'threshold must be a probability or "auto", got {threshold!r}')
        threshold = model.threshold()
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability, got {threshold}")
    if not torch.isfinite(image).all():
        raise ValueError("image has non-finite values")
    probability, scale = probability_map(model, image, diameter_px=diameter_px)
    return peaks_from_probability(
        probability,
        scale=scale,
        diameter_px=diameter_px,
        threshold=threshold,
        min_distance_diameters=min_distance_diameters,
        border_diameters=border_diameters,
        max_picks=max_picks,
    )


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
    step = OUTPUT_STRIDE / scale  # input px per map pixel
    edge = border_diameters * diameter_px / step
    yx, scores = find_peaks(
        probability,
        threshold=threshold - 1e-7,
        min_distance_px=max(1.0, min_distance_diameters * diameter_px / step),
        valid=interior(tuple(probability.shape), edge, probability.device),  # type: ignore[arg-type]
        max_picks=max_picks,
    )
    yx = yx.to(torch.float64).cpu()
    offset = (OUTPUT_STRIDE - 1) / 2.0
    xy = (yx.flip(-1) * OUTPUT_STRIDE + offset + 0.5) / scale - 0.5
    return Picks(xy, scores.to(torch.float64).cpu())
