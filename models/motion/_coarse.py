"""Coarser grids for the patch alignment: Fourier transform sizes that are fast, and frames
band-limited to the patches' Fourier crop on a grid with fewer pixels."""

from __future__ import annotations

import math

import torch

from causalscope.models.motion._align import batch_elements
from causalscope.models.motion._fourier import crop_spectrum

__all__ = ["band_limited", "band_limited_layout", "fft_friendly_above", "fft_friendly_below"]


def fft_friendly_below(n: int) -> int:
    """The largest even ``m <= n`` whose only prime factors are 2, 3 and 5 (at least 2).

    A Fourier transform's cost depends on the factors of its size: a 408 px patch (17 x 24)
    took 2.4 times as long as a 400 px one (5^2 x 16), a 1636 px one (4 x 409, a prime)
    2.7 times as long as 1600.
    """
    for m in range(max(2, n - n % 2), 1, -2):
        rest = m
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return m
    return 2


def fft_friendly_above(n: int) -> int:
    """The smallest even ``m >= n`` whose only prime factors are 2, 3 and 5 (at least 2)."""
    m = max(2, n + n % 2)
    while fft_friendly_below(m) != m:
        m += 2
    return m


def band_limited_layout(
    shape: tuple[int, int], size: int, crop: int
) -> tuple[tuple[int, int], int] | None:
    """A coarser grid ``(H, W)`` for band-limited frames, and the patch side on it, or None
    where none saves anything: the grid keeps at least the ``crop`` of a ``size`` px patch
    (``H >= h crop / size``), both it and the patch side have fast transforms, and the patch
    spans ``size`` frame pixels to within 3 %."""
    h, w = shape
    grid_h = fft_friendly_above(math.ceil(h * crop / size))
    while grid_h < h:
        scale = grid_h / h
        patch = fft_friendly_above(math.ceil(0.97 * size * scale))
        grid_w = fft_friendly_above(math.ceil(w * scale))
        if patch <= 1.03 * size * scale and patch < size and grid_w < w:
            return (grid_h, grid_w), patch
        grid_h = fft_friendly_above(grid_h + 2)
    return None


def band_limited(frames: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(F, H, W)`` float32: ``frames`` ``(F, h, w)`` resampled onto an ``(H, W)`` grid by a
    Fourier crop (exactly band-limited, nothing aliased), pixel ``(0, 0)`` kept in place, so
    a position ``x`` becomes ``x * W / w``; values per original pixel."""
    n, h, w = frames.shape
    big = h * (w // 2 + 1)
    out = torch.empty((n, *shape), dtype=torch.float32, device=frames.device)
    step = max(1, batch_elements(frames.device) // big)
    for start in range(0, n, step):
        stop = min(n, start + step)
        spectrum = crop_spectrum(torch.fft.rfft2(frames[start:stop].to(torch.float32)), shape)
        out[start:stop] = torch.fft.irfft2(spectrum, s=shape) * (shape[0] * shape[1] / (h * w))
    return out
