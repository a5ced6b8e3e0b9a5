"""Projections of a map at given poses, by the central-slice theorem: :class:`Projector`.

The map is padded (2x by default), divided by the transfer of trilinear interpolation and
Fourier transformed once; each projection is then a trilinearly interpolated central slice of
that transform on the padded grid, brought back to real space and cropped to the box, so
projecting thousands of poses costs one interpolation and two 2D transforms each, never a 3D
one. Sampling the slice on the box's own, coarser grid instead (``oversampled=False``, as
RELION's projector does) needs no 2D transforms and a quarter of the samples but folds the
padding's residue into the box: 4-5 % error against exact projections of Gaussian blobs,
against 1-2 % the other way; good enough to score poses against noisy particles.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch_image_interpolation import sample_image_3d

from causalscope.models.reconstruction._fourier import (
    gridding_correction,
    image_frequencies,
    padded_size,
    volume_coordinates,
)

__all__ = ["Projector", "shift_phase"]


def shift_phase(box_px: int, shifts_px: torch.Tensor) -> torch.Tensor:
    """``(n, b, b//2 + 1)`` factors that move an image by ``shifts_px`` ``(n, 2)`` ``[x, y]``
    when they multiply its rfft2."""
    frequencies = image_frequencies(box_px, device=shifts_px.device)
    phase = frequencies[..., 0] * shifts_px[:, 0, None, None].to(frequencies.dtype)
    phase = phase + frequencies[..., 1] * shifts_px[:, 1, None, None].to(frequencies.dtype)
    return torch.polar(torch.ones_like(phase), -2 * math.pi * phase)


class Projector:
    """A cubic map ``(b, b, b)`` (index ``[z, y, x]``, centre at ``b // 2``) ready to project.

    ``pad_factor`` oversamples the map's transform; 2 keeps interpolation errors below a few
    percent to Nyquist.
    """

    def __init__(self, volume: torch.Tensor, *, pad_factor: float = 2.0) -> None:
        if volume.ndim != 3 or len(set(volume.shape)) != 1:
            raise ValueError(f"volume must be a cube (b, b, b), got shape {tuple(volume.shape)}")
        self.box_px = int(volume.shape[0])
        self.padded_px = padded_size(self.box_px, pad_factor)
        pad = (self.padded_px - self.box_px) // 2
        padded = F.pad(volume.to(torch.float32), [pad, self.padded_px - self.box_px - pad] * 3)
        padded = padded / gridding_correction(self.padded_px, device=volume.device)
        transform = torch.fft.rfftn(torch.fft.ifftshift(padded), dim=(-3, -2, -1))
        self.transform = torch.fft.fftshift(transform, dim=(-3, -2))
        self._fine = image_frequencies(self.padded_px, device=volume.device)
        self._coarse = image_frequencies(self.box_px, device=volume.device)
        #: what searches derived from this map and may use again (dropped with the map)
        self.memo: dict[tuple[Any, ...], Any] = {}

    def project_rfft(
        self, rotations: torch.Tensor, *, max_frequency: float = 0.5, oversampled: bool = True
    ) -> torch.Tensor:
        """``(n, b, b//2 + 1)`` rfft2 (unshifted; image centre at the origin) of the projections
        at the poses ``rotations`` ``(n, 3, 3)`` (RELION's matrices); frequencies beyond
        ``max_frequency`` cycles per pixel are zero. ``oversampled=False``: sampled on the
        box's own grid (faster, less exact; see the module's notes)."""
        if rotations.ndim != 3 or rotations.shape[-2:] != (3, 3):
            raise ValueError(f"rotations must be (n, 3, 3), got {tuple(rotations.shape)}")
        frequencies = self._fine if oversampled else self._coarse
        inside = frequencies.norm(dim=-1) <= max_frequency
        wanted = frequencies[inside]
        coordinates, conjugate = volume_coordinates(
            wanted, rotations.to(self.transform.device), self.padded_px
        )
        channels = torch.view_as_real(self.transform).permute(3, 0, 1, 2)
        samples = sample_image_3d(channels, coordinates)  # (n, m, 2)
        values = torch.view_as_complex(samples.contiguous())
        values = torch.where(conjugate, values.conj(), values)
        out = torch.zeros(
            (rotations.shape[0], *frequencies.shape[:2]),
            dtype=values.dtype,
            device=values.device,
        )
        out[:, inside] = values
        if not oversampled:
            return out
        images = torch.fft.irfft2(out, s=(self.padded_px, self.padded_px))
        start = (self.padded_px - self.box_px) // 2
        window = slice(start, start + self.box_px)
        cropped = torch.fft.fftshift(images, dim=(-2, -1))[:, window, window]
        return torch.fft.rfft2(torch.fft.ifftshift(cropped, dim=(-2, -1)))

    def project(self, rotations: torch.Tensor, *, max_frequency: float = 0.5) -> torch.Tensor:
        """``(n, b, b)`` projections at the poses ``rotations`` ``(n, 3, 3)``."""
        transform = self.project_rfft(rotations, max_frequency=max_frequency)
        images = torch.fft.irfft2(transform, s=(self.box_px, self.box_px))
        return torch.fft.fftshift(images, dim=(-2, -1))
