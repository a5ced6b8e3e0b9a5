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

The area mask misses matter spread thinly: an aggregate's haze of protein lowers the counts by
a few percent over much of the field and lowers the ice level it is judged by with them. So
each pick is also judged on its own (:meth:`ExclusionMask.keeps_picks`): the mean counts over
its core (the disc within a quarter diameter of it) against the median of the picks' cores,
which are mostly in clean ice and carry the particle's own darkening, so that it cancels. A
pick whose core is darker by more than two thirds of ``dense_fraction`` is dropped. Over a
linear gradient of ice thickness, the rule and the area mask start to act at the same drop in
counts across the field (4 % at 3 %, about 12 nm of ice), and the rule takes no pick beyond the
mask's edge until the drop is about 8 % (without noise; with Poisson noise of 0.4 % in a core's
mean, 8 of 484 picks at the thick edge of a 3.5 % drop). On simulated micrographs with
aggregates (the picking bench's, seeds 0-2, 1024^2 at 2 A/px) the picks on them fell from 19 /
26 % to 3 / 6 % at 40 / 12 e/A^2 and F1 rose from 0.795 / 0.783 to 0.869 / 0.893; the clean,
crowded, ice-ball, carbon-edge and crack micrographs moved by at most 0.001 (the learned
picker's automatic cut, which then stopped dropping on one of them, took the row at 12 e/A^2
on to 4 % and 0.919: :data:`~models.picking.learned.calibration.MIN_COUNT_Z`).

Needs an image of counts (a sum of movie frames, as the live pipeline has), not a normalised
one: the thresholds are relative to the mean intensity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from causalscope.models.picking._common import check_image, interior
from causalscope.models.picking.learned.preprocess import gaussian_blur
from causalscope.models.picking.picks import Picks

__all__ = ["EXCLUSION_REASONS", "ExclusionMask", "core_means", "exclusion_mask"]

#: the reasons, in the order an area counts for them (a pixel both dense and at the border
#: counts as dense)
EXCLUSION_REASONS = ("dense", "thin", "border")
#: picks (outside the area mask) needed before each is judged against their median core
MIN_PICKS_FOR_CORES = 8
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
    dense_fraction: float = 0.03

    def keeps(self, xy_px: torch.Tensor) -> torch.Tensor:
        """``(n,)`` bool: which ``[x, y]`` positions ``(n, 2)`` lie outside the mask."""
        h, w = self.mask.shape
        x = xy_px[:, 0].round().long().clamp(0, w - 1)
        y = xy_px[:, 1].round().long().clamp(0, h - 1)
        return ~self.mask[y.to(self.mask.device), x.to(self.mask.device)].to(xy_px.device)

    def keeps_picks(
        self, image: torch.Tensor, xy_px: torch.Tensor, *, diameter_px: float
    ) -> torch.Tensor:
        """``(n,)`` bool: which picks ``(n, 2)`` lie outside the mask and have a core no darker
        than the median kept pick's by more than two thirds of ``dense_fraction`` (module
        docstring; ``image`` the counts the mask was made from)."""
        keep = self.keeps(xy_px)
        inside = torch.nonzero(keep).reshape(-1)
        if len(inside) >= MIN_PICKS_FOR_CORES:
            cores = core_means(image, xy_px[inside], radius_px=0.25 * diameter_px)
            median = torch.quantile(cores, 0.5)  # the mean of the middle two, as numpy does
            dark = cores < median * (1.0 - 2.0 / 3.0 * self.dense_fraction)
            keep[inside[dark.to(keep.device)]] = False
        return keep

    def drop(self, image: torch.Tensor, picks: Picks, *, diameter_px: float) -> tuple[Picks, int]:
        """``picks`` less those :meth:`keeps_picks` does not keep, and how many were dropped."""
        keep = self.keeps_picks(image, picks.xy_px, diameter_px=diameter_px)
        kept = Picks(picks.xy_px[keep], picks.scores[keep], picks.threshold)
        return kept, int((~keep).sum())


def core_means(image: torch.Tensor, xy_px: torch.Tensor, *, radius_px: float) -> torch.Tensor:
    """``(n,)`` mean of ``image`` ``(h, w)`` over the disc of ``radius_px`` around each
    ``[x, y]`` of ``xy_px`` ``(n, 2)`` (pixel centres within it; clipped at the edge). Discs
    wider than 16 px are taken on the image binned to about 8 px per radius, each centred on
    the bin that holds its pick (1,500 picks of a 150 px particle on a 4092 x 5760 sum: 0.09 s,
    0.3 s unbinned)."""
    factor = max(1, int(radius_px // 8))
    if factor > 1:
        image = F.avg_pool2d(image[None, None].float(), factor, ceil_mode=True)[0, 0]
        xy_px = (xy_px + 0.5) / factor - 0.5
        radius_px /= factor
    h, w = image.shape
    r = max(1, int(radius_px))
    span = torch.arange(-r, r + 1, device=image.device)
    dy, dx = torch.meshgrid(span, span, indexing="ij")
    inside = dy**2 + dx**2 <= radius_px**2
    dy, dx = dy[inside], dx[inside]
    xy = xy_px.to(image.device).round().long()
    y = (xy[:, 1:2] + dy[None]).clamp(0, h - 1)
    x = (xy[:, 0:1] + dx[None]).clamp(0, w - 1)
    return image[y, x].to(torch.float64).mean(dim=1)


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
    return ExclusionMask(dense | thin | border, fractions, level, thin, dense_fraction)


def _sample(values: torch.Tensor) -> torch.Tensor:
    flat = values.reshape(-1)
    return flat[:: flat.numel() // 1_000_000 + 1] if flat.numel() > 1_000_000 else flat


def _upsample(mask: torch.Tensor, factor: int, shape: tuple[int, int]) -> torch.Tensor:
    if factor == 1:
        return mask[: shape[0], : shape[1]]
    full = mask.repeat_interleave(factor, 0).repeat_interleave(factor, 1)
    return full[: shape[0], : shape[1]]
