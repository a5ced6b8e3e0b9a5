"""Smoothing of noisy trajectories with known per-frame variances (a Whittaker smoother).

Per-frame shifts of low-dose frames are noisy (about 0.15-0.2 px per axis for a 1024^2 frame
at 2 e/px), and late frames, whose high frequencies radiation damage has erased, are noisier
than early ones (0.03 px for frame 1, 0.25 px for frame 19 of a 20-frame movie). Specimen
motion is smooth in time, so each axis is estimated as

    s = argmin  sum_f (m_f - s_f)^2 / (c var_f)  +  lam * |(I - g g^T) Delta^2 s|^2

with ``g`` the unit vector along ``Delta^2 phi_tau`` of a relaxation ``phi_tau(t) = 1 -
exp(-t / tau)`` (``t`` the frame's mid-time in frames). The penalty acts on accelerations
*other than* the beam-induced relaxation, whose fast start the smoother would otherwise cut
(a plain second or third difference penalty either flattens the first frames or follows the
noise of the late ones). ``tau`` (from a grid, or no relaxation term) and ``lam`` minimise
Stein's unbiased risk estimate ``SURE = sum r^2 / (c var) + 2 tr(H) - n``; well-measured
trajectories (large frames, high dose) are left almost untouched.

``c`` = :data:`VARIANCE_CALIBRATION`: the linearised peak variance of
:func:`models.motion._fourier.peak_variance` is a lower bound; on simulated 1024^2 x 20
movies at 2 e/A^2 per frame the measured scatter of the per-frame shifts about the truth is
1.3-1.7x the predicted variance (the curvature of a noisy correlation peak is itself noisy),
and SURE with the uncalibrated variance chooses a third to a tenth of the best ``lam``.
"""

from __future__ import annotations

import math

import torch

__all__: list[str] = []

_ORDER = 2
_LAMBDAS = [10.0 ** (e / 4.0) for e in range(-16, 33)]
#: relaxation times (frames) tried for the unpenalised beam-induced term; None = no such term
_TAUS_FRAMES: list[float | None] = [None, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
#: actual / predicted variance of per-frame shift measurements (see the module docstring)
VARIANCE_CALIBRATION = 2.0


def _penalties(n: int) -> torch.Tensor:
    """``(T, n, n)`` penalty matrices, one per entry of :data:`_TAUS_FRAMES`."""
    eye = torch.eye(n, dtype=torch.float64)
    diff = eye
    for _ in range(_ORDER):
        diff = diff[1:] - diff[:-1]
    t = torch.arange(n, dtype=torch.float64) + 0.5
    out = []
    for tau in _TAUS_FRAMES:
        op = diff
        if tau is not None:
            phi = 1.0 - torch.exp(-t / tau)
            g = diff @ phi
            g = g / g.norm()
            op = diff - torch.outer(g, g) @ diff
        out.append(op.T @ op)
    return torch.stack(out)


def smooth_trajectory(
    measured: torch.Tensor, variance: torch.Tensor, model: tuple[int, ...] | None = None
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Smoothed ``(F, 2)`` trajectory from measurements and variances ``(F, 2)`` (float64), and
    the ``(tau, lam)`` chosen per axis (flat indices); ``model`` fixes that choice instead of
    SURE (an iteration that re-chose it each round could cycle between two choices)."""
    n = measured.shape[0]
    if n <= _ORDER + 2:
        return measured.clone(), ()
    m = measured.to(torch.float64).cpu()
    var = VARIANCE_CALIBRATION * variance.to(torch.float64).cpu().clamp(min=1e-8)
    penalties = _penalties(n)  # (T, n, n)
    lams = torch.tensor(_LAMBDAS, dtype=torch.float64)
    systems = lams[None, :, None, None] * penalties[:, None]  # (T, L, n, n)
    out = torch.empty_like(m)
    chosen = []
    for axis in range(m.shape[1]):
        weights = torch.diag(1.0 / var[:, axis])
        hat = torch.linalg.solve(weights + systems, weights.expand_as(systems))  # (T, L, n, n)
        fit = hat @ m[:, axis]  # (T, L, n)
        rss = ((m[:, axis] - fit) ** 2 / var[:, axis]).sum(dim=-1)
        risk = rss + 2.0 * hat.diagonal(dim1=-2, dim2=-1).sum(dim=-1) - n
        if model:
            best = model[axis]
        else:
            best = int(torch.argmin(torch.nan_to_num(risk, nan=math.inf)))
        chosen.append(best)
        out[:, axis] = fit.reshape(-1, n)[best]
    return out.to(measured.device), tuple(chosen)
