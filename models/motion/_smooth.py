"""Smoothing of noisy trajectories with known per-frame variances (a Whittaker smoother).

Per-frame shifts of low-dose frames are noisy (about 0.2-0.4 px for a 1024^2 frame at 2
e/px), and late frames, whose high frequencies radiation damage has erased, are noisier than
early ones. Specimen motion is smooth in time, so each axis is estimated as

    s = argmin  sum_f (m_f - s_f)^2 / var_f  +  lam * sum (Delta^3 s)^2

(third differences: a penalty on changes of acceleration, which leaves the fast exponential
start of beam-induced motion nearly unbiased). ``lam`` minimises Stein's unbiased risk
estimate ``SURE = sum r^2 / var + 2 tr(H) - n`` given the variances, so well-measured
trajectories (large frames, high dose) are left almost untouched.
"""

from __future__ import annotations

import torch

__all__: list[str] = []

_ORDER = 3
_LAMBDAS = [10.0 ** (e / 4.0) for e in range(-16, 25)]


def smooth_trajectory(measured: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Smoothed ``(F, 2)`` trajectory from measurements and variances ``(F, 2)`` (float64)."""
    n = measured.shape[0]
    if n <= _ORDER + 1:
        return measured.clone()
    m = measured.to(torch.float64).cpu()
    var = variance.to(torch.float64).cpu().clamp(min=1e-8)
    eye = torch.eye(n, dtype=torch.float64)
    diff = eye
    for _ in range(_ORDER):
        diff = diff[1:] - diff[:-1]
    penalty = diff.T @ diff
    out = torch.empty_like(m)
    for axis in range(m.shape[1]):
        weights = torch.diag(1.0 / var[:, axis])
        best_risk, best_fit = float("inf"), m[:, axis]
        for lam in _LAMBDAS:
            hat = torch.linalg.solve(weights + lam * penalty, weights)
            fit = hat @ m[:, axis]
            risk = float(((m[:, axis] - fit) ** 2 / var[:, axis]).sum() + 2 * torch.trace(hat) - n)
            if risk < best_risk:
                best_risk, best_fit = risk, fit
        out[:, axis] = best_fit
    return out.to(measured.device)
