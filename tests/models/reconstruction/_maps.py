"""Test helpers: a map of Gaussian blobs, and images of it at known poses with CTF and shifts."""

from __future__ import annotations

import numpy as np
import torch

from causalscope.models.reconstruction import ParticleCtfs, Projector, shift_phase
from causalscope.models.rotations import random_rotations


def _blobs(
    box_px: int,
    seed: int,
    n_blobs: int,
    reach: float = 0.25,
    widths_px: tuple[float, float] = (1.5, 3.0),
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reach = reach * box_px
    centres, widths = rng.uniform(-reach, reach, (n_blobs, 3)), rng.uniform(*widths_px, n_blobs)
    mass = widths**3  # a blob's integral grows as its width cubed
    return centres - (mass[:, None] * centres).sum(0) / mass.sum(), widths


def blob_map(
    box_px: int,
    *,
    seed: int = 0,
    n_blobs: int = 30,
    reach: float = 0.25,
    widths_px: tuple[float, float] = (1.5, 3.0),
) -> torch.Tensor:
    """``(b, b, b)`` random Gaussian blobs (``widths_px`` wide) spread over ``2 reach`` boxes along
    each axis, their centre of mass at the box centre (as a particle's map is)."""
    centres, widths = _blobs(box_px, seed, n_blobs, reach, widths_px)
    axis = torch.arange(box_px, dtype=torch.float64) - box_px // 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    volume = torch.zeros(box_px, box_px, box_px, dtype=torch.float64)
    for (cx, cy, cz), width in zip(centres, widths, strict=True):
        volume += torch.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * width**2))
    return volume.float()


def blob_projection(
    box_px: int, rotation: np.ndarray, *, seed: int = 0, n_blobs: int = 30
) -> torch.Tensor:
    """The exact ``(b, b)`` projection of :func:`blob_map` at the pose ``rotation``: each 3D
    Gaussian projects to a 2D Gaussian of the same width, at ``(A r)_xy``, ``sqrt(2 pi) w``
    high."""
    centres, widths = _blobs(box_px, seed, n_blobs)
    axis = torch.arange(box_px, dtype=torch.float64) - box_px // 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    image = torch.zeros(box_px, box_px, dtype=torch.float64)
    for (cx, cy, _), width in zip(centres @ rotation.T, widths, strict=True):
        image += (
            np.sqrt(2 * np.pi)
            * width
            * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * width**2))
        )
    return image.float()


def random_ctfs(n: int, *, pixel_size_angstrom: float, seed: int = 0) -> ParticleCtfs:
    rng = np.random.default_rng(seed)
    defocus = rng.uniform(8_000.0, 25_000.0, n)
    return ParticleCtfs(
        defocus,
        defocus + rng.uniform(0.0, 500.0, n),
        rng.uniform(0.0, 180.0, n),
        voltage_kv=300.0,
        spherical_aberration_mm=2.7,
        amplitude_contrast=0.1,
        pixel_size_angstrom=pixel_size_angstrom,
    )


def particle_images(
    volume: torch.Tensor, n: int, *, pixel_size_angstrom: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, ParticleCtfs, torch.Tensor]:
    """Noiseless ``(n, b, b)`` CTF-modulated projections of ``volume`` at random poses, each
    moved off-centre by minus its RELION origin offset; returns images, poses, CTFs, offsets."""
    rng = np.random.default_rng(seed)
    box = volume.shape[-1]
    rotations = torch.as_tensor(random_rotations(rng, n), dtype=torch.float32)
    offsets = torch.as_tensor(rng.uniform(-3.0, 3.0, (n, 2)), dtype=torch.float32)
    ctfs = random_ctfs(n, pixel_size_angstrom=pixel_size_angstrom, seed=seed)
    transform = Projector(volume).project_rfft(rotations) * ctfs.rfft_grid(box)
    transform = transform * shift_phase(box, -offsets)
    images = torch.fft.fftshift(torch.fft.irfft2(transform, s=(box, box)), dim=(-2, -1))
    return images, rotations, ctfs, offsets
