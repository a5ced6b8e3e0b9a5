"""Changing the pixel size of particles and maps by cropping or padding their transforms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fourier_crop_images", "rescale_map"]


def fourier_crop_images(images: torch.Tensor, box_px: int) -> torch.Tensor:
    """``(n, b, b)`` images binned to ``(n, box_px, box_px)`` (``box_px <= b``, even) by
    keeping their transforms' central ``box_px`` frequencies: the pixel size grows by
    ``b / box_px``, the centre stays at ``box // 2`` and the mean value is kept."""
    b = images.shape[-1]
    if box_px > b or box_px % 2 or box_px < 4:
        raise ValueError(f"box_px must be even, >= 4 and <= {b}, got {box_px}")
    if box_px == b:
        return images
    transform = torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))
    half = box_px // 2
    cropped = torch.cat(
        [transform[..., :half, : half + 1], transform[..., -half:, : half + 1]], dim=-2
    )
    out = torch.fft.irfft2(cropped, s=(box_px, box_px)) * (box_px / b) ** 2
    return torch.fft.fftshift(out, dim=(-2, -1))


def rescale_map(
    volume: torch.Tensor, *, from_pixel_angstrom: float, to_pixel_angstrom: float, box_px: int
) -> torch.Tensor:
    """A ``(b, b, b)`` map resampled to ``to_pixel_angstrom`` (the nearest size in whole
    voxels: transform cropped or zero-padded) and cut or padded to ``box_px`` about its centre."""
    b = volume.shape[-1]
    size = max(4, 2 * round(b * from_pixel_angstrom / to_pixel_angstrom / 2))
    transform = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(volume.to(torch.float32))))
    if size <= b:
        start = b // 2 - size // 2
        window = slice(start, start + size)
        transform = transform[window, window, window]
    else:
        before = size // 2 - b // 2
        transform = F.pad(transform, [before, size - b - before] * 3)
    resampled = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(transform)).real)
    resampled = resampled * (size / b) ** 3
    if size >= box_px:
        start = size // 2 - box_px // 2
        window = slice(start, start + box_px)
        return resampled[window, window, window].contiguous()
    before = box_px // 2 - size // 2
    return F.pad(resampled, [before, box_px - size - before] * 3)
