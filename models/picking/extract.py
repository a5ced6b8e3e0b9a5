"""Extraction of particle boxes, normalised as RELION does: :func:`extract_particles`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from causalscope.models.restoration.ctf_correction import phase_flip
from causalscope.models.restoration.normalise import normalise_particles
from causalscope.models.restoration.parameters import CtfParameters

__all__ = ["extract_particles", "normalise_particles"]


def extract_particles(
    image: torch.Tensor,
    xy_px: torch.Tensor,
    *,
    box_px: int,
    pixel_size_angstrom: float | None = None,
    ctf: CtfParameters | None = None,
    background_radius_px: float | None = None,
    normalise: bool = True,
    invert_contrast: bool = False,
) -> torch.Tensor:
    """Cut ``(N, box, box)`` particles centred on ``xy_px`` ``(N, 2)`` [x, y] from ``image``.

    Each box is centred on the nearest pixel (``box // 2`` is the centre, RELION's convention);
    boxes that cross the edge are filled by mirror reflection. Then, in order: phase flipping
    by ``ctf`` (needs ``pixel_size_angstrom``), contrast inversion (RELION's
    ``--invert_contrast``: white particles), and normalisation to zero mean and unit standard
    deviation outside ``background_radius_px`` (default 75 % of half the box).
    """
    if image.ndim != 2:
        raise ValueError(f"image must be (h, w), got shape {tuple(image.shape)}")
    if box_px < 4 or box_px % 2:
        raise ValueError(f"box_px must be even and >= 4, got {box_px}")
    if xy_px.ndim != 2 or xy_px.shape[-1] != 2:
        raise ValueError(f"xy_px must be (N, 2), got shape {tuple(xy_px.shape)}")
    if ctf is not None and pixel_size_angstrom is None:
        raise ValueError("phase flipping (ctf given) needs pixel_size_angstrom")
    h, w = image.shape
    half = box_px // 2
    if half >= min(h, w):
        raise ValueError(f"box_px {box_px} too large for a {h} x {w} image")
    data = image.to(torch.float32)
    padded = F.pad(data[None, None], (half, half, half, half), mode="reflect")[0, 0]
    centres = torch.round(xy_px.to(torch.float64)).long().to(image.device)
    offsets = torch.arange(box_px, device=image.device) - half
    rows = (centres[:, 1, None] + offsets[None, :] + half).clamp(0, h + 2 * half - 1)
    cols = (centres[:, 0, None] + offsets[None, :] + half).clamp(0, w + 2 * half - 1)
    particles = padded[rows[:, :, None], cols[:, None, :]]
    if ctf is not None and len(particles):
        assert pixel_size_angstrom is not None
        particles = phase_flip(particles, pixel_size_angstrom=pixel_size_angstrom, **ctf.kwargs())
    if invert_contrast:
        particles = -particles
    if normalise and len(particles):
        radius = 0.75 * half if background_radius_px is None else background_radius_px
        particles = normalise_particles(particles, background_radius_px=radius)
    return particles
