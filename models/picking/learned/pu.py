"""Positive-unlabelled learning: label maps from sparse picks and the non-negative PU risk.

Kiryo et al. (NeurIPS 2017), "Positive-unlabeled learning with non-negative risk estimator":
with a class prior ``pi`` (the share of positive pixels), positives ``P`` and unlabelled pixels
``U`` (here every pixel, labelled or not: the case-control setting), and the logistic loss
``l(f, +1) = softplus(-f)``, ``l(f, -1) = softplus(f)``,

    R = pi * E_P[l(f, +1)] + max(0, E_U[l(f, -1)] - pi * E_P[l(f, -1)]).

When the bracket falls below ``-beta`` the network has started to fit noise; the step then
descends on ``-(bracket)`` (their gradient ascent with ``gamma = 1``) instead. The prior comes
from the expected number of particles per micrograph (Topaz asks the same of its user).

Pixels known to be negative (picks that the session's 2D classification put in excluded
classes) add a positive-negative risk's negative term, as the PNU risk of Sakai et al. (ICML
2017) mixes the PN and PU risks: ``pi sum_N l(f, -1) / |P|``, each known negative weighed as a
positive pixel is. They are few and hard, not a sample of all negatives: weighed as
``(1 - pi) E_N`` (the PN risk's own weight) they outweighed the positives: fine-tuned on one
labelled EMPIAR-10059 micrograph and two more's picks sorted by the truth, each of the five
candidates scored F1 0 on the labelled one's held-back rows (0.68-0.77 with this weight).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["class_prior", "nnpu_loss", "positive_map"]


def positive_map(
    xy_canonical: torch.Tensor, shape: tuple[int, int], *, stride: int, radius_px: float
) -> torch.Tensor:
    """``shape`` bool map of the output pixels within ``radius_px`` (canonical) of a pick.

    Output pixel ``(i, j)`` covers canonical pixels ``stride * i ... stride * i + stride - 1``,
    so its centre is at ``stride * i + (stride - 1) / 2``.
    """
    out = torch.zeros(shape, dtype=torch.bool)
    if xy_canonical.numel() == 0:
        return out
    offset = (stride - 1) / 2.0
    ys = torch.arange(shape[0], dtype=torch.float64) * stride + offset
    xs = torch.arange(shape[1], dtype=torch.float64) * stride + offset
    reach = int(radius_px / stride) + 2
    for x, y in xy_canonical.to(torch.float64).tolist():
        i0 = max(0, int((y - offset) / stride) - reach)
        j0 = max(0, int((x - offset) / stride) - reach)
        i1, j1 = min(shape[0], i0 + 2 * reach + 2), min(shape[1], j0 + 2 * reach + 2)
        if i0 >= i1 or j0 >= j1:
            continue
        d2 = (ys[i0:i1, None] - y) ** 2 + (xs[None, j0:j1] - x) ** 2
        out[i0:i1, j0:j1] |= d2 <= radius_px**2
    return out


def class_prior(n_expected: float, n_labelled: int, n_positive_pixels: int, n_pixels: int) -> float:
    """The share of positive pixels if ``n_expected`` particles were all labelled.

    ``n_positive_pixels`` pixels are positive for ``n_labelled`` labels; each further particle
    adds as many on average.
    """
    if n_labelled < 1 or n_pixels < 1:
        raise ValueError(f"need labels and pixels, got {n_labelled}, {n_pixels}")
    if n_expected < n_labelled:
        raise ValueError(f"expected particles {n_expected} fewer than labelled {n_labelled}")
    return min(0.5, n_positive_pixels / n_labelled * n_expected / n_pixels)


def nnpu_loss(
    logits: torch.Tensor,
    positive: torch.Tensor,
    prior: float | torch.Tensor,
    beta: float = 0.0,
    *,
    negative: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(objective, risk)`` of the non-negative PU estimator.

    ``logits`` and ``positive`` (bool) have the same shape; ``prior`` is a float or a tensor
    broadcastable to ``logits`` (one prior per image). ``negative`` (bool, the same shape;
    never true where ``positive`` is) marks pixels known to be negative, whose term
    ``pi sum_N l(f, -1) / |P|`` is added (module docstring). Minimise ``objective``; ``risk``
    is the estimate of the PN risk (for reports).
    """
    if logits.shape != positive.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(positive.shape)}")
    if negative is not None and negative.shape != logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and negatives {tuple(negative.shape)}")
    p = positive.to(logits.dtype)
    n_p = p.sum().clamp(min=1.0)
    prior_t = torch.as_tensor(prior, dtype=logits.dtype, device=logits.device).expand_as(logits)
    # the prior weighs each positive by its own image's prior, so images combine in one mean
    positive_risk = (prior_t * p * F.softplus(-logits)).sum() / n_p
    negative_risk = F.softplus(logits).mean() - (prior_t * p * F.softplus(logits)).sum() / n_p
    known = torch.zeros((), dtype=logits.dtype, device=logits.device)
    if negative is not None and bool(negative.any()):
        q = negative.to(logits.dtype)
        known = (prior_t * q * F.softplus(logits)).sum() / n_p
    risk = positive_risk + negative_risk.clamp(min=0.0) + known
    if float(negative_risk.detach()) < -beta:
        return -negative_risk + known, risk.detach()
    return positive_risk + negative_risk + known, risk.detach()
