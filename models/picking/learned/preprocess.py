"""From a micrograph of any scale and encoding to the network's canonical grid.

The image is resampled (antialiased) so that the particle diameter spans
:data:`~.network.CANONICAL_DIAMETER_PX` pixels, its slow background (ice gradients, a carbon
edge's step) is removed (:func:`background`), and it is normalised by its own median and 1.4826
MAD, then clipped to +-6. Every step is invariant to an affine change of grey levels, so an
8-bit PNG and the float MRC it came from give the same input.

The background is a running median, not a mean: a mean (a Gaussian blur of two diameters was
used before) carries the step of an ice ball, a carbon edge or a crack a few diameters into
the clean ice beside it, where the particles then sit on an offset of several spreads that
the network never saw in training. On simulated 1024^2 micrographs (2 A/px, 120 A particles,
40 e/A^2, seeds 0-2; the live path: picks, then the exclusion mask), the shipped network found
82 % of the particles in clean ice beside ice balls and 69 % beside a crack, missing those
14-150 px from the contamination; a median steps with the edge, and the same weights find
95 % and 90 % there (on the real EMPIAR-10028 and -10059 sets, F1 0.872 and 0.653 before,
0.871 and 0.658 after).

The median still leans toward a crack or an empty hole when either covers part of its window
(up to half of it), and the smoothing that follows carries the step a bin or two into the ice:
beside a crack the ice came out 0.25-0.8 spreads darker than elsewhere within 60 px (at 2 A/px),
where the network's logits fall by 5-10 per 0.3 spread, so the particles there
were missed. Where the areas without ice are known (``ice_free``: the exclusion mask's ``thin``
areas, :mod:`models.picking.exclusion`), the ice's level is the median of the ice's bins alone
and the crack's the median of its own, each smoothed on its own side, and a pixel takes its
side's: the ice within 20 px of a simulated crack (outside the mask) is then 0.05-0.19 spreads
from the ice far from it, against 0.35-0.67 before. The live path (learned picker, exclusion
mask) on the simulated crack micrographs, 40 and 12 e/A^2: F1 0.90 and 0.89 before, 0.96 and
0.95 after on seeds 0-2 (with the mask's second ice level); on seeds 3-12, 0.91 and 0.89 with
that level alone, 0.92 and 0.91 with both. Dense matter (carbon, ice balls, aggregates) is left
in the median: split off the same way, the same network scored the particles beside an ice ball
or a carbon film lower (F1 0.975 -> 0.94 and 0.967 -> 0.95 at 40 e/A^2), since the median's
lean makes the ice beside dense matter brighter, which its logits favour.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from causalscope.models.picking.learned.network import CANONICAL_DIAMETER_PX

__all__ = ["CLIP", "background", "canonical_micrograph", "canonical_scale", "gaussian_blur"]

#: the running median's window, in particle diameters (side of the square)
BACKGROUND_WINDOW_DIAMETERS = 4.0
#: the median is taken over bins of this many particle diameters (side), then interpolated
_BACKGROUND_BIN_DIAMETERS = 1.0 / 3.0
#: rows of bins whose windows are gathered at once (bounds the memory of the gathering)
_ROWS_AT_ONCE = 32
#: the canonical image is clipped to this many spreads either side of its median
CLIP = 6.0


def canonical_scale(diameter_px: float) -> float:
    """Canonical pixels per input pixel for a particle ``diameter_px`` across."""
    if not diameter_px > 0:
        raise ValueError(f"diameter_px must be positive, got {diameter_px}")
    return CANONICAL_DIAMETER_PX / float(diameter_px)


def gaussian_blur(image: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """``(h, w)`` image blurred by a Gaussian (reflect padding, separable)."""
    radius = max(1, math.ceil(3.0 * sigma_px))
    radius = min(radius, min(image.shape[-2:]) - 1)
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    out = F.pad(image[None, None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = F.conv2d(out, kernel.view(1, 1, -1, 1))
    return out[0, 0]


def background(
    image: torch.Tensor, *, diameter_px: float, ice_free: torch.Tensor | None = None
) -> torch.Tensor:
    """The slow background of an ``(h, w)`` image whose particles span ``diameter_px``: the
    median over a square of :data:`BACKGROUND_WINDOW_DIAMETERS` diameters (reflected at the
    borders), taken on means of bins a third of a diameter wide, smoothed over one bin and
    interpolated back (bilinear), so that it follows a step within about a bin.

    ``ice_free`` ``(h, w)`` bool marks the areas without ice (cracks, empty holes): a bin more
    than half in them is left out of the ice's median and the ice's bins out of theirs; each
    side's median is smoothed on its own and each pixel takes its own side's (module
    docstring).
    """
    h, w = image.shape
    factor = max(1, round(_BACKGROUND_BIN_DIAMETERS * diameter_px))
    binned = F.avg_pool2d(image[None, None], factor, ceil_mode=True)[0, 0]
    k = round(BACKGROUND_WINDOW_DIAMETERS * diameter_px / factor) | 1
    r = min(k // 2, min(binned.shape) - 1)
    if ice_free is None:
        return _smoothed(_window_medians(binned, r), (h, w))
    if ice_free.shape != image.shape:
        raise ValueError(
            f"ice_free must have the image's shape {tuple(image.shape)}, "
            f"got {tuple(ice_free.shape)}"
        )
    apart = F.avg_pool2d(ice_free.to(binned)[None, None], factor, ceil_mode=True)[0, 0] > 0.5
    if not bool(apart.any()):
        return _smoothed(_window_medians(binned, r), (h, w))
    ice = _smoothed(_window_medians(binned, r, ~apart), (h, w))
    other = _smoothed(_window_medians(binned, r, apart), (h, w))
    return torch.where(ice_free.to(device=image.device, dtype=torch.bool), other, ice)


def _window_medians(
    binned: torch.Tensor, r: int, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Per bin, the median over the ``(2r + 1)^2`` bins around it (reflected at the borders)
    of those that are ``valid`` (all by default); of all where none of them is."""
    padded = F.pad(binned[None, None], (r, r, r, r), mode="reflect")[0, 0] if r else binned
    chosen = None
    if valid is not None:
        chosen = binned.masked_fill(~valid, math.nan)
        chosen = F.pad(chosen[None, None], (r, r, r, r), mode="reflect")[0, 0] if r else chosen
    out = torch.empty_like(binned)
    for i in range(0, binned.shape[0], _ROWS_AT_ONCE):
        rows = slice(i, i + min(_ROWS_AT_ONCE, binned.shape[0] - i) + 2 * r)
        if chosen is None:
            median = _windows(padded[rows], r).median(-1).values
        else:
            picked = _windows(chosen[rows], r)
            median = picked.nanmedian(-1).values
            none = torch.isnan(picked).all(-1)
            if bool(none.any()):
                median = torch.where(none, _windows(padded[rows], r).median(-1).values, median)
        out[i : i + median.shape[0]] = median
    return out


def _windows(rows: torch.Tensor, r: int) -> torch.Tensor:
    windows = rows.unfold(0, 2 * r + 1, 1).unfold(1, 2 * r + 1, 1)
    return windows.reshape(*windows.shape[:2], -1)


def _smoothed(binned: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if min(binned.shape) > 1:
        binned = gaussian_blur(binned, 1.0)
    return F.interpolate(binned[None, None], size=shape, mode="bilinear", align_corners=False)[0, 0]


def canonical_micrograph(
    image: torch.Tensor, *, diameter_px: float, ice_free: torch.Tensor | None = None
) -> tuple[torch.Tensor, float]:
    """``(h', w')`` float32 canonical image and the scale (canonical px per input px).

    ``image`` is ``(h, w)``, any real dtype. The canonical size is ``round(h * scale)``; the
    scale returned is the one actually applied along y (x differs by at most half a pixel
    over the image). ``ice_free`` ``(h, w)`` bool: the areas without ice, whose background is
    taken apart from the ice's (:func:`background`).
    """
    if image.ndim != 2:
        raise ValueError(f"image must be (h, w), got shape {tuple(image.shape)}")
    scale = canonical_scale(diameter_px)
    h, w = image.shape
    size = (max(16, round(h * scale)), max(16, round(w * scale)))
    x = image.to(torch.float32)[None, None]
    x = F.interpolate(x, size=size, mode="bilinear", antialias=scale < 1, align_corners=False)[0, 0]
    apart = None
    if ice_free is not None:
        if ice_free.shape != image.shape:
            raise ValueError(
                f"ice_free must have the image's shape {tuple(image.shape)}, "
                f"got {tuple(ice_free.shape)}"
            )
        apart = F.interpolate(ice_free.to(x)[None, None], size=size, mode="nearest")[0, 0] > 0.5
    x = x - background(x, diameter_px=CANONICAL_DIAMETER_PX, ice_free=apart)
    values = x.flatten()
    if values.numel() > 1_000_000:
        values = values[:: values.numel() // 1_000_000 + 1]
    median = values.median()
    mad = float((values - median).abs().median()) * 1.4826
    spread = mad if mad > 0 else float(values.std()) or 1.0
    x = ((x - median) / spread).clamp(-CLIP, CLIP)
    return x, size[0] / h
