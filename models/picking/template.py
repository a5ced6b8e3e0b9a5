"""Template picking: normalised cross-correlation with projections of a reference.

For each template ``t`` (zero mean and unit norm inside its circular mask ``M``) the score at
``r`` is the Pearson correlation of ``t`` with the image under the mask placed at ``r``:

    ncc(r) = sum_M t I(r + .) / sqrt(sum_M I^2 - (sum_M I)^2 / |M|)

with every sum a correlation done by FFT (Lewis 1995, "Fast normalized cross-correlation").
The best template wins at each pixel; peaks are then found as in :func:`pick_blobs`. Images
and templates are binned to the working grid (particle radius ~10 px) first, which low-passes
both the same way. Templates are projections of atoms (a model, the built-in phantom, or a map
turned into pseudo-atoms by :func:`daemon.formats.read_map_as_atoms`) at several orientations:
:func:`project_templates`. Pick on a CTF-corrected (Wiener) micrograph, or pass templates
that carry the micrograph's CTF.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from causalscope.models.picking._common import check_image, crop_spectrum, working_shape
from causalscope.models.picking.blob import peaks_to_picks
from causalscope.models.picking.picks import Picks

__all__ = ["pick_template", "project_templates", "template_correlation"]


def project_templates(
    coords_angstrom: np.ndarray,
    *,
    pixel_size_angstrom: float,
    box_px: int,
    n_views: int = 12,
    resolution_angstrom: float = 20.0,
    seed: int = 0,
) -> torch.Tensor:
    """``(n_views, box, box)`` projections of atoms ``(n, 3)`` at random orientations.

    Each atom adds 1 (a bilinear deposit); the sum is blurred by a Gaussian whose amplitude
    falls to ``exp(-1)`` at ``1 / resolution_angstrom``. View 0 is the unrotated model.
    """
    coords = np.asarray(coords_angstrom, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3 or len(coords) == 0:
        raise ValueError(f"coords_angstrom must be (n >= 1, 3), got shape {coords.shape}")
    if box_px < 8 or n_views < 1:
        raise ValueError(f"box_px must be >= 8 and n_views >= 1, got {box_px}, {n_views}")
    from causalscope.models.simulate.specimen import random_rotations, splat_bilinear

    rotations = np.concatenate(
        [np.eye(3)[None], random_rotations(np.random.default_rng(seed), n_views - 1)]
    )
    centred = coords - coords.mean(axis=0)
    ky = torch.fft.fftfreq(box_px, d=pixel_size_angstrom, dtype=torch.float64)
    kx = torch.fft.rfftfreq(box_px, d=pixel_size_angstrom, dtype=torch.float64)
    blur = torch.exp(-(ky[:, None] ** 2 + kx[None, :] ** 2) * resolution_angstrom**2)
    out = torch.empty((n_views, box_px, box_px), dtype=torch.float32)
    weights = torch.ones(len(coords), dtype=torch.float64)
    for i, rotation in enumerate(rotations):
        xy = (centred @ rotation.T)[:, :2] / pixel_size_angstrom + box_px // 2
        splat = splat_bilinear(torch.from_numpy(xy), weights, (box_px, box_px))
        out[i] = torch.fft.irfft2(torch.fft.rfft2(splat) * blur, s=(box_px, box_px)).float()
    return out


def _bin(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    spectrum = crop_spectrum(torch.fft.rfft2(image.to(torch.float32)), shape)
    scale = (shape[0] * shape[1]) / (image.shape[-2] * image.shape[-1])
    return torch.fft.irfft2(spectrum, s=shape) * scale


def template_correlation(
    image: torch.Tensor, templates: torch.Tensor, *, dark_particles: bool = True
) -> torch.Tensor:
    """Best normalised cross-correlation over ``templates`` ``(T, b, b)`` at each pixel.

    ``image`` ``(h, w)`` and the templates share a pixel size; templates show the particle
    bright (positive density), ``dark_particles`` inverts the image first. Returns ``(h, w)``,
    values in [-1, 1], centred on the template's centre ``(b // 2, b // 2)``.
    """
    check_image(image)
    if templates.ndim != 3 or templates.shape[-1] != templates.shape[-2]:
        raise ValueError(f"templates must be (T, b, b), got {tuple(templates.shape)}")
    box = templates.shape[-1]
    if box > min(image.shape):
        raise ValueError(f"template box {box} exceeds the image {tuple(image.shape)}")
    h, w = image.shape
    data = (-image if dark_particles else image).to(torch.float32)
    data = data - data.mean()
    device = image.device
    yy, xx = torch.meshgrid(
        torch.arange(box, dtype=torch.float32, device=device),
        torch.arange(box, dtype=torch.float32, device=device),
        indexing="ij",
    )
    mask = ((yy - box // 2) ** 2 + (xx - box // 2) ** 2 <= (box / 2) ** 2).to(torch.float32)
    n_mask = float(mask.sum())
    t = templates.to(device=device, dtype=torch.float32) * mask
    t = (t - (t.sum((-2, -1), keepdim=True) / n_mask)) * mask
    t = t / t.square().sum((-2, -1), keepdim=True).sqrt().clamp(min=1e-12)

    def correlate(kernel: torch.Tensor, spectrum: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros(*kernel.shape[:-2], h, w, dtype=torch.float32, device=device)
        padded[..., :box, :box] = kernel
        # shift the kernel's centre to the origin, so the output is centred on it
        padded = torch.roll(padded, shifts=(-(box // 2), -(box // 2)), dims=(-2, -1))
        return torch.fft.irfft2(spectrum * torch.fft.rfft2(padded).conj(), s=(h, w))

    spectrum = torch.fft.rfft2(data)
    local_sum = correlate(mask, spectrum)
    local_sq = correlate(mask, torch.fft.rfft2(data * data))
    local_norm = (local_sq - local_sum * local_sum / n_mask).clamp(min=0).sqrt()
    floor = 1e-6 * float(local_norm.max()) + 1e-30
    best = torch.full((h, w), -1.0, device=device)
    for i in range(t.shape[0]):  # one template at a time: memory stays O(h w)
        best = torch.maximum(best, correlate(t[i], spectrum) / local_norm.clamp(min=floor))
    return best


def pick_template(
    image: torch.Tensor,
    templates: torch.Tensor,
    *,
    pixel_size_angstrom: float,
    particle_diameter_angstrom: float,
    threshold: float | str = "auto",
    min_distance_angstrom: float | None = None,
    edge_angstrom: float | None = None,
    dark_particles: bool = True,
    max_picks: int | None = None,
) -> Picks:
    """Pick particles on an ``(h, w)`` micrograph by normalised cross-correlation.

    ``templates`` ``(T, b, b)`` are at ``pixel_size_angstrom`` (e.g. from
    :func:`project_templates`), particle bright. Both are binned to the working grid, the best
    NCC over templates is scored as a robust z (so that a numeric ``threshold`` means what it
    does in :func:`pick_blobs`), and peaks are kept as there, except that ``"auto"`` is
    Otsu's split of the peak scores (never below 0): there is no noise estimate for the NCC
    to fall back on, so crowded micrographs, where every peak is a particle, lose some.
    Returns :class:`Picks` in input pixels.
    """
    check_image(image)
    if templates.ndim != 3:
        raise ValueError(f"templates must be (T, b, b), got {tuple(templates.shape)}")
    radius_a = 0.5 * particle_diameter_angstrom
    h, w = image.shape
    shape = working_shape((h, w), pixel_size_angstrom=pixel_size_angstrom, radius_angstrom=radius_a)
    factor = math.sqrt((h / shape[0]) * (w / shape[1]))
    box = templates.shape[-1]
    small_box = max(8, 2 * round(box / factor / 2))
    small_templates = _bin(templates.to(image.device), (small_box, small_box))
    ncc = template_correlation(_bin(image, shape), small_templates, dark_particles=dark_particles)
    return peaks_to_picks(
        ncc,
        scale=(h / shape[0], w / shape[1]),
        pixel_size_angstrom=pixel_size_angstrom,
        particle_diameter_angstrom=particle_diameter_angstrom,
        threshold=threshold,
        min_distance_angstrom=min_distance_angstrom,
        edge_angstrom=edge_angstrom,
        max_picks=max_picks,
    )
