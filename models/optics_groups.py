"""Optics groups from the exposures' beam/image shifts, as users split data for beam-tilt
refinement.

Beam-image shift (EPU's AFIS, SerialEM's multishot) tilts the beam in proportion to the shift,
so exposures taken at the same shift position share a beam tilt. RELION's CTF refinement
estimates one beam tilt per optics group, so each shift position becomes its own group.

Method: Ward's hierarchical clustering of the ``(x, y)`` shifts. Without a given number of
groups the dendrogram is cut at its clearest gap: the ``K`` (2 .. ``max_groups``) whose merge
height jumps by the largest factor from the last merge kept to the first merge undone; when no
jump is at least ``min_gap_ratio`` the shifts form one group (the jitter of one position).
Groups are numbered row by row (centres whose ``y`` differ by less than half the closest two
centres' distance share a row), then by ``x``: the same pattern gives the same numbering.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cluster_image_shifts"]


def cluster_image_shifts(
    shifts: np.ndarray,
    *,
    n_groups: int | None = None,
    max_groups: int = 64,
    min_gap_ratio: float = 4.0,
) -> np.ndarray:
    """The shift group (0, 1, ...) of each exposure.

    Parameters
    ----------
    shifts
        ``(n, 2)`` image (or beam) shifts, in the acquisition software's own units.
    n_groups
        The number of groups (e.g. 9 for a 3 x 3 multishot pattern); None chooses it from the
        largest gap of the dendrogram (see the module docstring).
    max_groups
        The most groups chosen automatically.
    min_gap_ratio
        The smallest jump of merge height that counts as a gap between positions.

    Returns
    -------
    np.ndarray
        ``(n,)`` int64 labels in ``0 .. K - 1``.
    """
    xy = np.asarray(shifts, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"shifts must be (n, 2), got shape {xy.shape}")
    if not np.isfinite(xy).all():
        raise ValueError("shifts must be finite")
    n = xy.shape[0]
    if n_groups is not None and not 1 <= n_groups <= max(n, 1):
        raise ValueError(f"n_groups must be in 1..{n} (the exposures), got {n_groups}")
    if n < 2 or n_groups == 1:
        return np.zeros(n, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(xy, method="ward")
    k = n_groups if n_groups is not None else _clearest_cut(tree[:, 2], max_groups, min_gap_ratio)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    raw = fcluster(tree, t=k, criterion="maxclust") - 1
    return _ordered(xy, raw)


def _clearest_cut(heights: np.ndarray, max_groups: int, min_gap_ratio: float) -> int:
    """``K`` whose cut separates the smallest undone merge from the largest kept by the most."""
    n = heights.size + 1
    scale = max(float(heights.max()), 1e-300)
    best_k, best_ratio = 1, min_gap_ratio
    for k in range(2, min(max_groups, n) + 1):
        kept, undone = heights[n - k - 1], heights[n - k]  # sorted ascending by linkage
        ratio = undone / max(kept, 1e-9 * scale)
        if ratio > best_ratio:
            best_k, best_ratio = k, ratio
    return best_k


def _ordered(xy: np.ndarray, raw: np.ndarray) -> np.ndarray:
    labels = np.unique(raw)
    centres = np.array([xy[raw == label].mean(axis=0) for label in labels])
    # rows: centres whose y differ by less than half the closest two centres' distance
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    tolerance = 0.5 * gaps[~np.eye(labels.size, dtype=bool)].min()
    by_y = np.argsort(centres[:, 1], kind="stable")
    row = np.empty(labels.size, dtype=np.int64)
    row[by_y] = np.cumsum(np.r_[0, np.diff(centres[by_y, 1]) > tolerance])
    order = np.lexsort((centres[:, 0], row))  # rows by y, then x within a row
    renumber = np.empty(labels.size, dtype=np.int64)
    renumber[order] = np.arange(labels.size)
    return renumber[np.searchsorted(labels, raw)]
