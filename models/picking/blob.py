"""Blob picking: a difference of Gaussians at the particle's scale, then NMS.

A uniform disc of radius ``R`` answers a scale-normalised Laplacian of Gaussian most strongly
at ``sigma = R / sqrt(2)`` (Lindeberg 1998); we use ``sigma = R`` (see ``_SIGMA_PER_RADIUS``).
The difference of Gaussians ``G(s/k) - G(s k)`` with ``k = 1.6`` approximates the LoG
(Marr & Hildreth 1980), and is what DoG Picker (Voss et al. 2009, J. Struct. Biol. 166) runs
on micrographs. The filter is applied in Fourier space on a
grid binned so that ``R`` spans about 10 pixels (the DoG is a band-pass, so nothing the picker
uses is lost by binning), and peaks are kept by a score threshold, a minimum distance and an
edge margin.
"""

from __future__ import annotations

import math

import torch

from causalscope.models.picking._common import (
    check_image,
    crop_spectrum,
    cycles_grid,
    find_peaks,
    greedy_nms,
    interior,
    robust_location_scale,
    working_shape,
)
from causalscope.models.picking.picks import Picks

__all__ = ["blob_response", "pick_blobs"]

_DOG_RATIO = 1.6
#: DoG scale: the LoG optimum for a uniform disc is R/sqrt(2) (Lindeberg), but the CTF's
#: fringes and a hollow shell move the peak of that finer filter off centre, so sigma = R
#: (the comparison of the two is in the README's benchmark section).
_SIGMA_PER_RADIUS = 1.0
#: ``threshold="auto"`` falls back to keeping the peaks this many noise sigmas above the
#: background (see :func:`pick_blobs`)
NOISE_FLOOR_SIGMAS = 2.5
#: the fine band that measures the noise: the working grid minus its blur by this many px
_FINE_BLUR_PX = 0.7


def blob_response(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    particle_diameter_angstrom: float,
    dark_particles: bool = True,
) -> tuple[torch.Tensor, tuple[float, float]]:
    """The DoG response on the working grid and the grid's pixel size ``(sy, sx)`` in input px.

    Positive where particles are; ``dark_particles`` says they are darker than the background
    (raw micrographs and their CTF corrections) rather than brighter.
    """
    response, scale, _ = _dog(
        image,
        pixel_size_angstrom=pixel_size_angstrom,
        particle_diameter_angstrom=particle_diameter_angstrom,
        dark_particles=dark_particles,
    )
    return response, scale


def _dog(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    particle_diameter_angstrom: float,
    dark_particles: bool,
) -> tuple[torch.Tensor, tuple[float, float], float]:
    """:func:`blob_response` and an estimate of the response's noise sigma.

    The noise is measured in the finest band of the working grid (the grid minus its blur),
    where shot noise outweighs the particles even on a crowded micrograph, as 1.4826 MAD, and
    carried to the DoG's band by the ratio of the two filters' norms, i.e. as if the noise
    were white. Structure in the fine band (ice, the CTF's fringes, particle edges) only adds,
    so the estimate errs high: above the DoG's noise on an empty micrograph.
    """
    check_image(image)
    if particle_diameter_angstrom <= 0 or pixel_size_angstrom <= 0:
        raise ValueError(
            f"particle_diameter_angstrom and pixel_size_angstrom must be positive, got "
            f"{particle_diameter_angstrom} and {pixel_size_angstrom}"
        )
    radius_a = 0.5 * particle_diameter_angstrom
    h, w = image.shape
    shape = working_shape((h, w), pixel_size_angstrom=pixel_size_angstrom, radius_angstrom=radius_a)
    spectrum = torch.fft.rfft2(image.to(torch.float32))
    small = crop_spectrum(spectrum, shape)
    del spectrum
    scale_y, scale_x = h / shape[0], w / shape[1]
    radius_px = radius_a / pixel_size_angstrom / math.sqrt(scale_x * scale_y)
    sigma = _SIGMA_PER_RADIUS * radius_px
    k2 = cycles_grid(shape, image.device)
    two_pi2 = 2.0 * math.pi**2
    dog = torch.exp(-two_pi2 * (sigma / _DOG_RATIO) ** 2 * k2) - torch.exp(
        -two_pi2 * (sigma * _DOG_RATIO) ** 2 * k2
    )
    response = torch.fft.irfft2(small * dog, s=shape)
    fine = 1.0 - torch.exp(-two_pi2 * _FINE_BLUR_PX**2 * k2)
    fine_response = torch.fft.irfft2(small * fine, s=shape)
    _, fine_sigma = robust_location_scale(fine_response, interior(shape, radius_px, image.device))
    # the rfft grid holds the columns 1 .. ceil(w/2) - 1 twice over the full spectrum
    weight = torch.ones_like(k2)
    weight[:, 1 : (shape[1] + 1) // 2] = 2.0
    gain = math.sqrt(float((weight * dog**2).sum() / (weight * fine**2).sum()))
    return (-response if dark_particles else response), (scale_y, scale_x), fine_sigma * gain


def pick_blobs(
    image: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    particle_diameter_angstrom: float,
    threshold: float | str = "auto",
    min_distance_angstrom: float | None = None,
    edge_angstrom: float | None = None,
    dark_particles: bool = True,
    max_picks: int | None = None,
) -> Picks:
    """Pick blob-like particles on an ``(h, w)`` micrograph.

    Parameters
    ----------
    image
        The micrograph (raw, phase-flipped or Wiener-filtered).
    pixel_size_angstrom, particle_diameter_angstrom
        Sampling and the particle's diameter.
    threshold
        Minimum score (robust z of the DoG response, see :class:`Picks`), or ``"auto"``: when
        the scores of the local maxima (after NMS) are bimodal, background below particles,
        Otsu's split between the two modes; otherwise (every peak a particle on a crowded
        micrograph, or none on an empty one) the peaks whose response exceeds
        :data:`NOISE_FLOOR_SIGMAS` times the response's noise sigma, measured in the
        working grid's finest band (a DoG has no DC gain, so the background's response is 0).
        See :mod:`models.picking._threshold`. The robust z alone is not a noise-calibrated
        SNR on crowded micrographs (particles move the median and MAD), hence the noise
        estimate.
    min_distance_angstrom
        Minimum distance between picks (default 0.8 diameters).
    edge_angstrom
        Picks closer than this to an edge are dropped (default one radius).
    dark_particles
        Particles darker than the background (default, as in raw micrographs).
    max_picks
        Keep at most this many (the best).
    """
    response, (sy, sx), noise_sigma = _dog(
        image,
        pixel_size_angstrom=pixel_size_angstrom,
        particle_diameter_angstrom=particle_diameter_angstrom,
        dark_particles=dark_particles,
    )
    return peaks_to_picks(
        response,
        scale=(sy, sx),
        pixel_size_angstrom=pixel_size_angstrom,
        particle_diameter_angstrom=particle_diameter_angstrom,
        threshold=threshold,
        min_distance_angstrom=min_distance_angstrom,
        edge_angstrom=edge_angstrom,
        max_picks=max_picks,
        noise_floor=NOISE_FLOOR_SIGMAS * noise_sigma,
    )


def peaks_to_picks(
    response: torch.Tensor,
    *,
    scale: tuple[float, float],
    pixel_size_angstrom: float,
    particle_diameter_angstrom: float,
    threshold: float | str,
    min_distance_angstrom: float | None,
    edge_angstrom: float | None,
    max_picks: int | None,
    noise_floor: float | None = None,
) -> Picks:
    """Score a working-grid response, find its peaks and map them to input pixels.

    ``noise_floor`` (in response units; the background's response is 0) is where
    ``threshold="auto"`` cuts when the scores are not bimodal; without it (the template
    picker, which has no noise estimate), ``"auto"`` is Otsu's split, never below the median.
    """
    sy, sx = scale
    working_apix = pixel_size_angstrom * math.sqrt(sx * sy)
    min_distance = (
        0.8 * particle_diameter_angstrom
        if min_distance_angstrom is None
        else (min_distance_angstrom)
    )
    edge = 0.5 * particle_diameter_angstrom if edge_angstrom is None else edge_angstrom
    if min_distance <= 0 or edge < 0:
        raise ValueError(
            f"min_distance_angstrom must be > 0 and edge_angstrom >= 0, got {min_distance}, {edge}"
        )
    valid = interior(tuple(response.shape), edge / working_apix, response.device)  # type: ignore[arg-type]
    if not valid.any():
        empty = torch.zeros((0, 2), dtype=torch.float64, device=response.device)
        return Picks(empty, torch.zeros(0, dtype=torch.float64, device=response.device))
    median, spread = robust_location_scale(response, valid)
    z = (response - median) / spread
    yx, scores = find_peaks(
        z,
        threshold=threshold,
        min_distance_px=min_distance / working_apix,
        valid=valid,
        max_picks=max_picks,
        noise_floor=None if noise_floor is None else (noise_floor - median) / spread,
    )
    yx_f = yx.to(torch.float64)
    xy = torch.stack([yx_f[:, 1] * sx, yx_f[:, 0] * sy], dim=1)
    # the working grid is a decimation, so its spacing in input pixels is (sy, sx): a pick
    # kept at >= d working px may come out a hair under d input px when sx != sy; re-check
    keep = greedy_nms(xy, min_distance / pixel_size_angstrom)
    return Picks(xy[keep], scores[keep].to(torch.float64))
