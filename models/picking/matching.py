"""Scoring picks against known positions: :func:`match_picks`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["PickMatch", "match_picks"]


@dataclass(frozen=True)
class PickMatch:
    """One-to-one matching of picks to true positions.

    Attributes
    ----------
    precision, recall, f1
        ``tp / n_picks``, ``tp / n_truth`` and their harmonic mean (0 when undefined).
    n_true_positive, n_picks, n_truth
        Counts.
    pairs
        ``(tp, 2)`` indices ``[pick, truth]`` of the matched pairs.
    """

    precision: float
    recall: float
    f1: float
    n_true_positive: int
    n_picks: int
    n_truth: int
    pairs: np.ndarray


def _as_xy(points: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(
        points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points,
        dtype=np.float64,
    )
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must be (n, 2) [x, y], got shape {array.shape}")
    return array


def match_picks(
    picks_xy_px: torch.Tensor | np.ndarray,
    truth_xy_px: torch.Tensor | np.ndarray,
    *,
    radius_px: float,
) -> PickMatch:
    """Match picks to truth one to one (Hungarian, minimum total distance) within a radius.

    A pick is a true positive when it is paired with a true position at most ``radius_px``
    away; each true position and each pick is used once. The assignment maximises the number
    of such pairs, then minimises their total distance.
    """
    if radius_px <= 0:
        raise ValueError(f"radius_px must be positive, got {radius_px}")
    picks = _as_xy(picks_xy_px, "picks_xy_px")
    truth = _as_xy(truth_xy_px, "truth_xy_px")
    pairs = np.zeros((0, 2), dtype=np.int64)
    if len(picks) and len(truth):
        distance = np.sqrt(((picks[:, None, :] - truth[None, :, :]) ** 2).sum(-1))
        within = distance <= radius_px
        # a match is worth more than any distance: count first, then the closest pairing
        cost = np.where(within, distance / radius_px - 2.0, 0.0)
        rows, cols = linear_sum_assignment(cost)
        good = within[rows, cols]
        pairs = np.stack([rows[good], cols[good]], axis=1).astype(np.int64)
    tp = len(pairs)
    precision = tp / len(picks) if len(picks) else 0.0
    recall = tp / len(truth) if len(truth) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return PickMatch(precision, recall, f1, tp, len(picks), len(truth), pairs)
