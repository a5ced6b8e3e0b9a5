"""Particle centres from expert disc masks: :func:`disc_centres` and :func:`disc_iou`.

In crowded micrographs the expert's discs overlap, so a connected component of the mask can
hold many particles and its centroid is none of them. Discs of the known radius are fitted
greedily: each step places the disc that covers the most mask pixels not yet covered (less the
background pixels it would cover), among centres whose disc lies mostly inside the mask, and
stops when the best disc would add less than half a disc of new mask. The redrawn discs are
checked against the mask by intersection over union (:func:`disc_iou`). A mask drawn at
another size than its micrograph is brought to the micrograph's pixels first
(:func:`mask_at`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

__all__ = ["disc_centres", "disc_iou", "draw_discs", "mask_at"]

#: a candidate centre's disc must lie at least this much inside the mask
_MIN_INSIDE = 0.8
#: stop when the best disc adds fewer new mask pixels than this share of a disc
_MIN_GAIN = 0.5


def _disc(radius_px: float) -> np.ndarray:
    r = int(np.ceil(radius_px))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x**2 + y**2 <= radius_px**2).astype(np.float64)


def draw_discs(shape: tuple[int, int], xy_px: np.ndarray, *, radius_px: float) -> np.ndarray:
    """``shape`` bool image with a disc of ``radius_px`` at each ``[x, y]``."""
    out = np.zeros(shape, dtype=bool)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    r = int(np.ceil(radius_px)) + 1
    for x, y in np.asarray(xy_px, dtype=np.float64).reshape(-1, 2):
        i0, i1 = max(0, int(y) - r), min(shape[0], int(y) + r + 2)
        j0, j1 = max(0, int(x) - r), min(shape[1], int(x) + r + 2)
        d2 = (xs[i0:i1, j0:j1] - x) ** 2 + (ys[i0:i1, j0:j1] - y) ** 2
        out[i0:i1, j0:j1] |= d2 <= radius_px**2
    return out


def mask_at(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A grey ``(h', w')`` ``mask`` at ``shape`` (bilinear): each mask pixel covers the block of
    micrograph pixels it was drawn over, so a mask 4 times smaller puts its pixel ``c``'s
    centre at ``4 c + 1.5``. Matching the corner pixels' centres instead (``scipy``'s default)
    stretches the mask by one pixel's worth less a micrograph pixel: 1.5 px off at the edges
    of a 1024 px micrograph from a 256 px mask, the error EMPIAR-10059's truth had."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (h, w), got shape {mask.shape}")
    if tuple(mask.shape) == tuple(shape):
        return mask
    zoom = (shape[0] / mask.shape[0], shape[1] / mask.shape[1])
    out = ndimage.zoom(mask.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest")
    return out[: shape[0], : shape[1]]


def disc_iou(mask: np.ndarray, xy_px: np.ndarray, *, radius_px: float) -> float:
    """Intersection over union of the bool ``mask`` and discs redrawn at ``xy_px``."""
    drawn = draw_discs(mask.shape, xy_px, radius_px=radius_px)
    union = np.logical_or(mask, drawn).sum()
    return float(np.logical_and(mask, drawn).sum() / union) if union else 1.0


def disc_centres(mask: np.ndarray, *, radius_px: float) -> np.ndarray:
    """``(n, 2)`` [x, y] centres (mask pixels) of discs of ``radius_px`` that redraw ``mask``.

    ``mask`` is ``(h, w)``, bool or grey (``> 127`` is inside).
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (h, w), got shape {mask.shape}")
    if not radius_px >= 1.0:
        raise ValueError(f"radius_px must be >= 1, got {radius_px}")
    inside = mask if mask.dtype == bool else mask > 127
    disc = _disc(radius_px)
    area = disc.sum()
    inside_f = inside.astype(np.float64)
    fraction = signal.fftconvolve(inside_f, disc, mode="same") / area
    allowed = fraction >= _MIN_INSIDE
    outside_cover = signal.fftconvolve(1.0 - inside_f, disc, mode="same")
    uncovered = inside_f.copy()
    gain = signal.fftconvolve(uncovered, disc, mode="same") - outside_cover
    centres: list[tuple[int, int]] = []
    w = inside.shape[1]
    while True:
        masked = np.where(allowed, gain, -np.inf)
        i, j = divmod(int(np.argmax(masked)), w)
        if not masked[i, j] >= _MIN_GAIN * area:
            break
        centres.append((i, j))
        _paint(uncovered, disc, i, j, 0.0)
        _update_gain(gain, uncovered, outside_cover, disc, i, j)
    centres = _refine(centres, inside_f, outside_cover, allowed, disc)
    return np.asarray([(j, i) for i, j in centres], dtype=np.float64).reshape(-1, 2)


def _paint(target: np.ndarray, disc: np.ndarray, i: int, j: int, value: float) -> None:
    """Set the pixels of ``disc`` centred at ``(i, j)`` to ``value``."""
    h, w = target.shape
    r = disc.shape[0] // 2
    i0, i1, j0, j1 = max(0, i - r), min(h, i + r + 1), max(0, j - r), min(w, j + r + 1)
    window = disc[i0 - i + r : i1 - i + r, j0 - j + r : j1 - j + r] > 0
    target[i0:i1, j0:j1][window] = value


def _update_gain(
    gain: np.ndarray,
    uncovered: np.ndarray,
    outside_cover: np.ndarray,
    disc: np.ndarray,
    i: int,
    j: int,
) -> None:
    """Recompute ``gain`` within ``2 r`` of ``(i, j)`` (all a new disc there can change)."""
    h, w = gain.shape
    r = disc.shape[0] // 2
    a0, a1, b0, b1 = (
        max(0, i - 2 * r),
        min(h, i + 2 * r + 1),
        max(0, j - 2 * r),
        min(w, j + 2 * r + 1),
    )
    p0, p1, q0, q1 = max(0, a0 - r), min(h, a1 + r), max(0, b0 - r), min(w, b1 + r)
    local = signal.fftconvolve(uncovered[p0:p1, q0:q1], disc, mode="same")
    gain[a0:a1, b0:b1] = local[a0 - p0 : a1 - p0, b0 - q0 : b1 - q0] - outside_cover[a0:a1, b0:b1]


def _refine(
    centres: list[tuple[int, int]],
    inside: np.ndarray,
    outside_cover: np.ndarray,
    allowed: np.ndarray,
    disc: np.ndarray,
    sweeps: int = 3,
) -> list[tuple[int, int]]:
    """Coordinate descent: move each disc, the others fixed, to the best place within ``r``.

    Greedy placement can put the first disc of a clump of three between its particles; this
    moves it to where it covers the most mask that the other discs leave uncovered.
    """
    h, w = inside.shape
    r = disc.shape[0] // 2
    count = np.zeros_like(inside)  # how many discs cover each pixel
    for i, j in centres:
        _add(count, disc, i, j, 1.0)
    for _ in range(sweeps):
        moved = 0
        for k, (i, j) in enumerate(centres):
            _add(count, disc, i, j, -1.0)
            a0, a1, b0, b1 = max(0, i - r), min(h, i + r + 1), max(0, j - r), min(w, j + r + 1)
            p0, p1, q0, q1 = max(0, a0 - r), min(h, a1 + r), max(0, b0 - r), min(w, b1 + r)
            free = inside[p0:p1, q0:q1] * (count[p0:p1, q0:q1] == 0)
            local = signal.fftconvolve(free, disc, mode="same")[
                a0 - p0 : a1 - p0, b0 - q0 : b1 - q0
            ]
            local = np.where(allowed[a0:a1, b0:b1], local - outside_cover[a0:a1, b0:b1], -np.inf)
            di, dj = divmod(int(np.argmax(local)), local.shape[1])
            best = (a0 + di, b0 + dj)
            if local[di, dj] > local[i - a0, j - b0] + 1e-9:
                centres[k] = best
                moved += 1
            _add(count, disc, *centres[k], 1.0)
        if not moved:
            break
    return centres


def _add(count: np.ndarray, disc: np.ndarray, i: int, j: int, sign: float) -> None:
    h, w = count.shape
    r = disc.shape[0] // 2
    i0, i1, j0, j1 = max(0, i - r), min(h, i + r + 1), max(0, j - r), min(w, j + r + 1)
    count[i0:i1, j0:j1] += sign * disc[i0 - i + r : i1 - i + r, j0 - j + r : j1 - j + r]
