"""Where not to pick: dense matter, missing ice and the image border, from the counts alone.

Carbon film, ice balls and aggregates scatter electrons outside the objective aperture, so the
micrograph's local mean of counts falls under them by their mass thickness
(``exp(-t / L)``, ``L`` about 300 nm); a crack or an empty hole has no ice and its local mean
rises above the ice's. Particles barely move the local mean at the scale used here (a 50 A
Gaussian, or a quarter of the particle diameter if larger), since their contrast is phase contrast,
so the mean over that scale stays within a percent or two of the ice level on a clean
micrograph (the image triage's contamination test, `models.triage`, rests on the same
statistic).

The ice level is a high quantile of the local mean (by default the 75th percentile), not its
median: dense matter only darkens, and carbon often covers half the field or more. A crack or
an empty hole brightens, and over a quarter of the field it lifts that quantile off the ice:
the particles, which darken the local mean by 1-1.5 %, then fell under the dense threshold
(82 % of those in clean ice masked on a simulated micrograph, 2 A/px, with a crack over 22 % of
it). So the quantile is taken a second time without the areas brighter than the first level
allows (6 % of them masked there, those touching the crack). A pixel is
``dense`` where its local mean is more than ``dense_fraction`` below that level and ``thin``
where it is more than ``thin_fraction`` above. The local mean's scale already carries both
regions past a sharp edge: by about one scale (50 A) where the counts fall by a half, less
where they fall by little. They are not widened further by the particle's radius: that
dropped 10-21 % of the particles centred in clean ice on simulated micrographs with ice balls,
carbon edges and cracks (1024^2 at 2 A/px, particles 120 A across), for fewer picks on
aggregates (7-20 % of the learned picker's picks on them instead of 12-26 %). ``border``
is the band within one radius of the image's edge, where a particle's box leaves the image.

Needs an image of counts (a sum of movie frames, as the live pipeline has), not a normalised
one: the thresholds are relative to the mean intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from causalscope.models.picking._common import check_image, interior
from causalscope.models.picking.learned.preprocess import gaussian_blur

__all__ = ["EXCLUSION_REASONS", "ExclusionMask", "exclusion_mask"]

#: the reasons, in the order an area counts for them (a pixel both dense and at the border
#: counts as dense)
EXCLUSION_REASONS = ("dense", "thin", "border")
#: the local mean's Gaussian scale, A (at least; half the particle diameter if larger)
SMOOTHING_ANGSTROM = 50.0


@dataclass(frozen=True)
class ExclusionMask:
    """``mask`` ``(h, w)`` bool (True: do not pick), ``fractions`` of the area per reason
    (:data:`EXCLUSION_REASONS`), the ice ``level`` (mean counts per pixel) it was judged by and
    the ``thin`` areas alone ``(h, w)`` bool (without ice: a crack, an empty hole), whose
    background the learned picker measures apart from the ice's
    (:func:`~models.picking.learned.preprocess.background`)."""

    mask: torch.Tensor
    fractions: dict[str, float]
    level: float
    thin: torch.Tensor

    def keeps(self, xy_px: torch.Tensor) -> torch.Tensor:
        """``(n,)`` bool: which ``[x, y]`` positions ``(n, 2)`` lie outside the mask."""
        h, w = self.mask.shape
        x = xy_px[:, 0].round().long().clamp(0, w - 1)
        y = xy_px[:, 1].round().long().clamp(0, h - 1)
        return ~self.mask[y.to(self.mask.device), x.to(self.mask.device)].to(xy_px.device)


def exclusion_mask(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    particle_diameter_angstrom: float,
    dense_fraction: float = 0.03,
    thin_fraction: float = 0.03,
    level_quantile: float = 0.75,
) -> ExclusionMask:
    """The areas of ``image`` ``(h, w)`` (counts) not to pick in; see the module docstring."""
    check_image(image)
    if pixel_size_angstrom <= 0 or particle_diameter_angstrom <= 0:
        raise ValueError(
            f"pixel size and diameter must be > 0, got {pixel_size_angstrom} and "
            f"{particle_diameter_angstrom} A"
        )
    if not 0 < dense_fraction < 1 or not 0 < thin_fraction < 1:
        raise ValueError(f"fractions must lie in (0, 1), got {dense_fraction}, {thin_fraction}")
    work = image.detach().to(torch.float32)
    mean = float(work.mean())
    if mean <= 0:
        raise ValueError(
            f"an image of counts is needed (positive mean intensity), got mean {mean:.3g}"
        )
    h, w = work.shape
    radius_px = 0.5 * particle_diameter_angstrom / pixel_size_angstrom
    sigma_px = max(SMOOTHING_ANGSTROM, 0.25 * particle_diameter_angstrom) / pixel_size_angstrom
    # the local mean on a grid binned to about a quarter of its scale: the same mask, far less
    # work (a 4096^2 sum at 1 A/px is binned 25x)
    factor = max(1, int(sigma_px // 4))
    binned = F.avg_pool2d(work[None, None], factor, ceil_mode=True)[0, 0]
    local = binned if sigma_px / factor < 0.5 else gaussian_blur(binned, sigma_px / factor)
    level = float(torch.quantile(_sample(local), level_quantile))
    # a crack or an empty hole over a large share of the field lifts that quantile above the
    # ice: the level is taken again without the areas brighter than the first one allows
    brighter = local > level * (1.0 + thin_fraction)
    if bool(brighter.any()) and not bool(brighter.all()):
        level = float(torch.quantile(_sample(local[~brighter]), level_quantile))
    relative = local / max(level, 1e-12) - 1.0
    dense = relative < -dense_fraction
    thin = (relative > thin_fraction) & ~dense
    dense = _upsample(dense, factor, (h, w))
    thin = _upsample(thin, factor, (h, w))
    border = ~interior((h, w), radius_px, work.device) & ~dense & ~thin
    area = float(h * w)
    fractions = {
        "dense": float(dense.sum()) / area,
        "thin": float(thin.sum()) / area,
        "border": float(border.sum()) / area,
    }
    return ExclusionMask(dense | thin | border, fractions, level, thin)


def _sample(values: torch.Tensor) -> torch.Tensor:
    flat = values.reshape(-1)
    return flat[:: flat.numel() // 1_000_000 + 1] if flat.numel() > 1_000_000 else flat


def _upsample(mask: torch.Tensor, factor: int, shape: tuple[int, int]) -> torch.Tensor:
    if factor == 1:
        return mask[: shape[0], : shape[1]]
    full = mask.repeat_interleave(factor, 0).repeat_interleave(factor, 1)
    return full[: shape[0], : shape[1]]
