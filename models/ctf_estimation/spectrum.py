"""Averaged periodograms in the centred layout of RELION's ``*_PS.mrc`` files.

Layout: a ``(box, box)`` spectrum with the origin (k = 0) at ``(box // 2, box // 2)``; pixel
``(i, j)`` holds ``ky = (i - box // 2) / (box * apix)`` and ``kx = (j - box // 2) / (box *
apix)`` in 1/Angstrom. Normalisation: white noise of variance ``sigma^2`` per pixel gives a flat
spectrum of ``sigma^2`` (Parseval per pixel), with or without the edge taper, so a known noise
variance (Poisson counting: the mean count per pixel) pins the noise floor directly.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.parallel import map_pieces, python_threads

__all__ = ["PowerSpectrum", "looks_like_power_spectrum", "power_spectrum", "tile_window"]


@dataclass(frozen=True)
class PowerSpectrum:
    """An averaged periodogram and what is needed to judge its noise.

    Attributes
    ----------
    values
        ``(..., box, box)`` centred spectrum (origin at ``(box // 2, box // 2)``).
    n_tiles
        Number of tiles averaged.
    pixel_size_angstrom
        Pixel size of the image the spectrum came from (the spectrum's sampling is
        ``1 / (box * pixel_size_angstrom)`` per pixel).
    n_independent
        Effective number of independent periodograms averaged: overlapping tiles are
        correlated, so this is ``n_tiles`` divided by the variance inflation of the overlap
        (Welch 1967, from the tile window's autocorrelation). The relative variance of one
        spectrum pixel is ``1 / n_independent`` (exponentially distributed periodograms).
    taper_px
        Width of the cosine edge taper of each tile (0: none).
    """

    values: torch.Tensor
    n_tiles: int
    pixel_size_angstrom: float
    n_independent: float
    taper_px: int = 0


def tile_window(
    box_px: int, *, taper_px: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``(box,)`` separable tile window: 1 inside, a raised-cosine edge ``taper_px`` wide."""
    window = torch.ones(box_px, dtype=torch.float64, device=device)
    if taper_px > 0:
        ramp = 0.5 - 0.5 * torch.cos(
            math.pi * (torch.arange(taper_px, dtype=torch.float64, device=device) + 0.5) / taper_px
        )
        window[:taper_px] = ramp
        window[-taper_px:] = ramp.flip(0)
    return window


def _tile_offsets(length: int, box: int, step: int) -> list[int]:
    """Evenly spread tile starts from 0 to ``length - box`` at most ``step`` apart."""
    count = max(1, math.ceil((length - box) / step) + 1)
    return [round(v) for v in np.linspace(0, length - box, count)]


def power_spectrum(
    image: torch.Tensor,
    *,
    box_px: int = 512,
    overlap: float = 0.5,
    pixel_size_angstrom: float = 1.0,
    taper_px: int | None = None,
) -> PowerSpectrum:
    """Average the periodograms of overlapping tiles of an image.

    Each tile has its mean removed and is multiplied by a separable window with a raised-cosine
    edge (``taper_px``, default ``box_px // 16``), which suppresses the cross that the tile
    edges' discontinuities leave along the axes. The periodogram is divided by the window's
    ``sum(w^2)``, so the white-noise floor stays exactly ``sigma^2`` with or without the taper;
    what the taper does change is the smoothing of the spectrum (the spectrum is convolved with
    ``|W(k)|^2``, which damps fine Thon rings by the window's autocorrelation at the rings'
    real-space lag; :func:`models.ctf_estimation.window_attenuation` models it) and the
    independence of overlapping tiles.

    Parameters
    ----------
    image
        ``(..., h, w)`` real image(s), ``h, w >= box_px``; leading dimensions are batched.
    box_px
        Even tile size.
    overlap
        Fraction of a tile shared with its neighbour, in [0, 0.9].
    pixel_size_angstrom
        Recorded in the result.
    taper_px
        Width of the edge taper in pixels; ``0`` for a plain rectangular window.

    Returns
    -------
    PowerSpectrum
        ``values`` of shape ``(..., box_px, box_px)``, float32 (float64 for float64 input).
    """
    taper = _checked_taper(image, box_px, overlap, pixel_size_angstrom, taper_px)
    h, w = image.shape[-2:]
    out_dtype = torch.float64 if image.dtype == torch.float64 else torch.float32
    work = image.to(torch.float64 if out_dtype == torch.float64 else torch.float32)
    w1 = tile_window(box_px, taper_px=taper, device=image.device).to(work.dtype)
    window = w1[:, None] * w1[None, :]
    norm = float((w1**2).sum()) ** 2
    step = max(1, round(box_px * (1.0 - overlap)))
    ys, xs = _tile_offsets(h, box_px, step), _tile_offsets(w, box_px, step)
    batch = image.shape[:-2]

    def rows(starts: list[int]) -> torch.Tensor:
        acc = torch.zeros((*batch, box_px, box_px // 2 + 1), dtype=work.dtype, device=image.device)
        for y0 in starts:
            # one row of tiles at a time keeps memory at a few boxes even for 8k images
            row = torch.stack([work[..., y0 : y0 + box_px, x0 : x0 + box_px] for x0 in xs], -3)
            row = row - row.mean(dim=(-2, -1), keepdim=True)
            spec = torch.fft.rfft2(row * window)
            acc += (spec.real**2 + spec.imag**2).sum(dim=-3)
        return acc

    # the rows of tiles shared between Python threads (models.parallel): as a few small
    # transforms each, two torch threads per transform were slower than one
    pieces = min(len(ys), python_threads(image.device))
    groups = [ys[i::pieces] for i in range(pieces)]
    acc = functools.reduce(
        torch.add,
        map_pieces(rows, groups, device=image.device, name="periodogram", one_thread=True),
    )
    n_tiles = len(ys) * len(xs)
    half = acc / (norm * n_tiles)
    values = _centred_full(half, box_px).to(out_dtype)
    inflation = _overlap_inflation(
        w1, [b - a for a, b in itertools.pairwise(ys)]
    ) * _overlap_inflation(w1, [b - a for a, b in itertools.pairwise(xs)])
    return PowerSpectrum(
        values=values,
        n_tiles=n_tiles,
        pixel_size_angstrom=float(pixel_size_angstrom),
        n_independent=n_tiles / inflation,
        taper_px=taper,
    )


def _checked_taper(
    image: torch.Tensor,
    box_px: int,
    overlap: float,
    pixel_size_angstrom: float,
    taper_px: int | None,
) -> int:
    """The taper width of :func:`power_spectrum`, once its arguments are checked."""
    if image.dim() < 2:
        raise ValueError(f"image must be (..., h, w), got shape {tuple(image.shape)}")
    if image.is_complex():
        raise ValueError("image must be real, got a complex tensor")
    h, w = image.shape[-2:]
    if box_px < 16 or box_px % 2:
        raise ValueError(f"box_px must be even and >= 16, got {box_px}")
    if h < box_px or w < box_px:
        raise ValueError(f"image {h}x{w} is smaller than box_px={box_px}")
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"overlap must be in [0, 0.9], got {overlap}")
    if pixel_size_angstrom <= 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")
    taper = box_px // 16 if taper_px is None else taper_px
    if not 0 <= taper <= box_px // 2:
        raise ValueError(f"taper_px must be in [0, {box_px // 2}], got {taper}")
    return taper


def _centred_full(half: torch.Tensor, n: int) -> torch.Tensor:
    """The full centred ``(n, n)`` spectrum from an rfft2 half ``(n, n // 2 + 1)``."""
    full = torch.empty((*half.shape[:-1], n), dtype=half.dtype, device=half.device)
    full[..., : n // 2 + 1] = half
    # P(-k) = P(k): columns n/2+1 .. n-1 are the mirror of columns n/2-1 .. 1, rows negated
    mirror = half[..., 1 : n // 2].flip(-1)
    rows = (-torch.arange(n, device=half.device)) % n
    full[..., n // 2 + 1 :] = mirror[..., rows, :]
    return torch.fft.fftshift(full, dim=(-2, -1))


def _overlap_inflation(window: torch.Tensor, steps: list[int]) -> float:
    """Variance inflation of averaging overlapping periodograms along one axis (Welch)."""
    if not steps:
        return 1.0
    energy = float((window**2).sum())
    step = float(np.mean(steps))
    total = 1.0
    lag = step
    while lag < len(window):
        shift = round(lag)
        rho = float((window[shift:] * window[: len(window) - shift]).sum()) / energy
        total += 2.0 * rho**2
        lag += step
    return total


def looks_like_power_spectrum(array: np.ndarray | torch.Tensor) -> bool:
    """Whether a 2-D array is a centred power (or amplitude, or log) spectrum.

    The test is exact centrosymmetry about ``(n // 2, n // 2)`` of a square, even-sized array
    (``a[i, j] == a[n - i, n - j]`` for ``i, j >= 1``, to 0.1 % of the range): every spectrum of a
    real image has it, and no micrograph does. Non-finite arrays and constant arrays are not
    spectra.
    """
    data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if data.ndim != 2 or data.shape[0] != data.shape[1] or data.shape[0] % 2 or data.shape[0] < 8:
        return False
    data = data.astype(np.float64)
    if not np.all(np.isfinite(data)):
        return False
    inner = data[1:, 1:]
    spread = float(np.abs(inner - np.median(inner)).max())
    if spread == 0.0:
        return False
    asymmetry = float(np.abs(inner - inner[::-1, ::-1]).max())
    return asymmetry <= 1e-3 * spread
