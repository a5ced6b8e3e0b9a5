"""Private: where a particle's Fourier samples sit in a map's padded, half (rfft) transform.

The map's transform is kept as ``rfftn`` of the padded map with its centre moved to the array
origin, then ``fftshift`` on z and y: index ``(z, y, x)`` holds the frequency
``((z - n//2) / n, (y - n//2) / n, x / n)`` cycles per pixel. A particle image's ``rfft2`` (centre
moved to the origin first) sample at ``(kx, ky)`` is the map's sample at ``A^T (kx, ky, 0)`` for
the pose ``A`` (RELION's convention, :mod:`models.rotations`): the central-slice theorem.
"""

from __future__ import annotations

import torch

__all__ = ["gridding_correction", "image_frequencies", "padded_size", "volume_coordinates"]


def padded_size(box_px: int, pad_factor: float) -> int:
    """The even size of a ``box_px`` map padded by ``pad_factor`` (>= 1)."""
    if pad_factor < 1:
        raise ValueError(f"pad_factor must be >= 1, got {pad_factor}")
    return round(box_px * pad_factor / 2) * 2


def image_frequencies(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """``(b, b//2 + 1, 3)`` frequencies ``[kx, ky, 0]`` in cycles per pixel of an image's rfft2
    (unshifted layout, as ``torch.fft.rfft2`` returns it)."""
    ky = torch.fft.fftfreq(box_px, device=device)
    kx = torch.fft.rfftfreq(box_px, device=device)
    grid_y, grid_x = torch.meshgrid(ky, kx, indexing="ij")
    return torch.stack([grid_x, grid_y, torch.zeros_like(grid_x)], dim=-1)


def volume_coordinates(
    frequencies: torch.Tensor, rotations: torch.Tensor, padded_px: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Array coordinates ``(n, m, 3)`` ``[z, y, x]`` in the map's padded half transform of the
    frequencies ``(m, 3)`` of an image at each pose ``(n, 3, 3)``, and ``(n, m)`` whether each
    sample was reflected through the origin (its value must be conjugated): the half transform
    only holds ``x >= 0``."""
    rotated = frequencies @ rotations.to(frequencies.dtype)  # k_map = A^T k_image, as rows
    conjugate = rotated[..., 0] < 0
    rotated = torch.where(conjugate[..., None], -rotated, rotated)
    centre = padded_px // 2
    coordinates = torch.stack(
        [
            rotated[..., 2] * padded_px + centre,
            rotated[..., 1] * padded_px + centre,
            rotated[..., 0] * padded_px,
        ],
        dim=-1,
    )
    return coordinates, conjugate


def gridding_correction(padded_px: int, device: torch.device | None = None) -> torch.Tensor:
    """``(n, n, n)`` real-space transfer of trilinear interpolation on an ``n``-grid,
    ``sinc^2`` per axis (centre at ``n // 2``): divide a map by it before sampling its transform,
    or after reconstructing from trilinear insertion."""
    frequency = torch.fft.fftshift(torch.fft.fftfreq(padded_px, device=device))
    s = torch.sinc(frequency) ** 2
    return s[:, None, None] * s[None, :, None] * s[None, None, :]
