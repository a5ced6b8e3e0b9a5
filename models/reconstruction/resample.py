"""Changing the pixel size of particles and maps by cropping or padding their transforms."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fourier_crop", "rescale_map"]


def fourier_crop(images: torch.Tensor, size_px: int) -> torch.Tensor:
    """``(..., b, b)`` images binned to ``(..., s, s)`` (``s <= b``, both even) by keeping
    their transforms' central ``s`` frequencies (no aliasing): the pixel size grows by
    ``b / s``, the centre ``b // 2`` maps to ``s // 2`` and pixel values keep their scale."""
    b = images.shape[-1]
    if size_px > b or size_px % 2 or b % 2 or size_px < 4:
        raise ValueError(f"fourier_crop: size_px {size_px} must be even, >= 4 and <= the box {b}")
    if size_px == b:
        return images
    spectrum = torch.fft.rfft2(images)
    half = size_px // 2
    rows = torch.cat([spectrum[..., :half, : half + 1], spectrum[..., b - half :, : half + 1]], -2)
    return torch.fft.irfft2(rows, s=(size_px, size_px)) * (size_px / b) ** 2


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
