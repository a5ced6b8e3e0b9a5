"""Shared by the pickers: the working grid, response normalisation, peak finding and NMS."""

from __future__ import annotations

import torch

from causalscope.models.grids import window_extreme
from causalscope.models.picking._threshold import auto_threshold, otsu_threshold

#: the pickers work on a grid where the particle radius spans about this many pixels
WORKING_RADIUS_PX = 10.0
#: ``threshold="auto"`` chooses its cut among the peaks above this score
AUTO_FLOOR = -2.0


def check_image(image: torch.Tensor) -> None:
    if image.ndim != 2:
        raise ValueError(f"image must be (h, w), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be floating point, got {image.dtype}")
    if min(image.shape) < 16:
        raise ValueError(f"image must be at least 16 x 16, got {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise ValueError("image has non-finite values")


def working_shape(
    shape: tuple[int, int], *, pixel_size_angstrom: float, radius_angstrom: float
) -> tuple[int, int]:
    """Even ``(h', w') <= (h, w)`` at which the radius spans ~``WORKING_RADIUS_PX`` pixels."""
    factor = max(1.0, radius_angstrom / pixel_size_angstrom / WORKING_RADIUS_PX)
    h, w = shape
    return (
        min(h, 2 * max(8, round(h / factor / 2))),
        min(w, 2 * max(8, round(w / factor / 2))),
    )


def crop_spectrum(spectrum: torch.Tensor, out_shape: tuple[int, int]) -> torch.Tensor:
    """Crop an ``rfft2`` spectrum ``(..., h, w//2+1)`` to that of an ``out_shape`` image."""
    h2, w2 = out_shape
    top = spectrum[..., : h2 // 2, : w2 // 2 + 1]
    bottom = spectrum[..., spectrum.shape[-2] - h2 // 2 :, : w2 // 2 + 1]
    return torch.cat([top, bottom], dim=-2)


def cycles_grid(shape: tuple[int, int], device: torch.device | str) -> torch.Tensor:
    """``|k|^2`` in cycles/pixel^2 on the ``rfft2`` grid of ``shape``."""
    ky = torch.fft.fftfreq(shape[0], device=device)
    kx = torch.fft.rfftfreq(shape[1], device=device)
    return ky[:, None] ** 2 + kx[None, :] ** 2


def robust_location_scale(response: torch.Tensor, valid: torch.Tensor) -> tuple[float, float]:
    """``(median, 1.4826 MAD)`` of ``response`` over the ``valid`` pixels."""
    values = response[valid]
    if values.numel() > 1_000_000:  # a strided sample is plenty for two quantiles
        values = values[:: values.numel() // 1_000_000 + 1]
    median = values.median()
    mad = (values - median).abs().median() * 1.4826
    scale = mad if mad > 0 else values.std().clamp(min=1e-12)
    return float(median), float(scale)


def interior(shape: tuple[int, int], edge_px: float, device: torch.device | str) -> torch.Tensor:
    """``(h, w)`` bool: pixels at least ``edge_px`` from every border."""
    h, w = shape
    ys = torch.arange(h, device=device)[:, None]
    xs = torch.arange(w, device=device)[None, :]
    return (ys >= edge_px) & (ys <= h - 1 - edge_px) & (xs >= edge_px) & (xs <= w - 1 - edge_px)


def find_peaks(
    z: torch.Tensor,
    *,
    threshold: float | str,
    min_distance_px: float,
    valid: torch.Tensor,
    max_picks: int | None,
    noise_floor: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local maxima of ``z`` above ``threshold``, at least ``min_distance_px`` apart.

    Candidates are the local maxima of their 3 x 3 neighbourhood; a greedy pass in order of
    decreasing score keeps a candidate unless one already kept lies closer than
    ``min_distance_px`` (Euclidean). ``threshold="auto"`` cuts the kept peaks by
    :func:`~models.picking._threshold.auto_threshold` with ``noise_floor`` (in units of
    ``z``) as its fallback; without a noise floor, at Otsu's split of the scores (never below
    0), which suits sparse micrographs only. Returns ``(yx, scores)``, best first.
    """
    if min_distance_px <= 0:
        raise ValueError(f"min_distance_px must be positive, got {min_distance_px}")
    pooled = window_extreme(z, 1)
    floor = AUTO_FLOOR if isinstance(threshold, str) else threshold
    candidate = (z >= pooled) & (z > floor) & valid
    yx = torch.nonzero(candidate)
    scores = z[candidate]
    order = torch.argsort(scores, descending=True)
    yx, scores = yx[order], scores[order]
    keep = greedy_nms(yx.to(torch.float64), min_distance_px)
    yx, scores = yx[keep], scores[keep]
    if isinstance(threshold, str):
        if threshold != "auto":
            raise ValueError(f'threshold must be a number or "auto", got {threshold!r}')
        if noise_floor is None:
            cut = max(0.0, otsu_threshold(scores)) if scores.numel() else 0.0
        else:
            cut = auto_threshold(scores, noise_floor=noise_floor)
        yx, scores = yx[scores > cut], scores[scores > cut]
    if max_picks is not None:
        yx, scores = yx[:max_picks], scores[:max_picks]
    return yx, scores


def greedy_nms(points: torch.Tensor, min_distance: float) -> torch.Tensor:
    """Indices of ``points`` ``(n, 2)`` (sorted best first) kept by greedy suppression."""
    n = points.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    kept: list[int] = []
    suppressed = torch.zeros(n, dtype=torch.bool, device=points.device)
    chunk = 4096
    for start in range(0, n, chunk):
        block = points[start : start + chunk]
        if kept:
            near_kept = torch.cdist(block, points[kept]) < min_distance
            suppressed[start : start + chunk] |= near_kept.any(dim=1)
        close = torch.cdist(block, block) < min_distance
        for i in range(block.shape[0]):
            if suppressed[start + i]:
                continue
            kept.append(start + i)
            suppressed[start : start + chunk] |= close[i]
    return torch.as_tensor(kept, dtype=torch.long, device=points.device)
