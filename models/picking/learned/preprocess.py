"""From a micrograph of any scale and encoding to the network's canonical grid.

The image is resampled (antialiased) so that the particle diameter spans
:data:`~.network.CANONICAL_DIAMETER_PX` pixels, its slow background (ice gradients, a carbon
edge's step) is removed by subtracting a Gaussian blur of two canonical diameters, and it is
normalised by its own median and 1.4826 MAD, then clipped to +-6. Every step is invariant to an
affine change of grey levels, so an 8-bit PNG and the float MRC it came from give the same
input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from causalscope.models.picking.learned.network import CANONICAL_DIAMETER_PX

__all__ = ["CLIP", "canonical_micrograph", "canonical_scale", "gaussian_blur"]

_BACKGROUND_SIGMA_DIAMETERS = 2.0
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


def canonical_micrograph(image: torch.Tensor, *, diameter_px: float) -> tuple[torch.Tensor, float]:
    """``(h', w')`` float32 canonical image and the scale (canonical px per input px).

    ``image`` is ``(h, w)``, any real dtype. The canonical size is ``round(h * scale)``; the
    scale returned is the one actually applied along y (x differs by at most half a pixel
    over the image).
    """
    if image.ndim != 2:
        raise ValueError(f"image must be (h, w), got shape {tuple(image.shape)}")
    scale = canonical_scale(diameter_px)
    h, w = image.shape
    size = (max(16, round(h * scale)), max(16, round(w * scale)))
    x = image.to(torch.float32)[None, None]
    x = F.interpolate(x, size=size, mode="bilinear", antialias=scale < 1, align_corners=False)[0, 0]
    x = x - gaussian_blur(x, _BACKGROUND_SIGMA_DIAMETERS * CANONICAL_DIAMETER_PX)
    values = x.flatten()
    if values.numel() > 1_000_000:
        values = values[:: values.numel() // 1_000_000 + 1]
    median = values.median()
    mad = float((values - median).abs().median()) * 1.4826
    spread = mad if mad > 0 else float(values.std()) or 1.0
    x = ((x - median) / spread).clamp(-CLIP, CLIP)
    return x, size[0] / h
