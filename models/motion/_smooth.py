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
noise of the late ones). Each ``(tau, lam)`` (``tau`` from a grid, or no relaxation term) is
scored by Stein's unbiased risk estimate ``SURE = sum r^2 / (c var) + 2 tr(H) - n``, and the
fits are averaged with weights ``exp(-SURE / 2)`` (Akaike weights; SURE is AIC's form for a
linear smoother) rather than the one of least SURE taken: the choice among neighbouring
``lam`` is itself noisy, and the average does not jump with it. On simulated 1024^2 x 20
movies (``bench motion``'s, seeds 0-15) the global trajectory's RMS error fell from 0.083 to
0.076 px on average, and on 13 of the 16 seeds (seeds over 0.1 px: 5 -> 3). Well-measured
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
    measured: torch.Tensor, variance: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothed ``(F, 2)`` trajectory from measurements and variances ``(F, 2)`` (float64), and
    the weights ``(2, T * L)`` of the ``(tau, lam)`` fits averaged per axis; ``weights`` fixes
    them instead of SURE (an iteration that re-weighted each round could cycle).

    Every ``lam`` of one ``tau`` shares one eigendecomposition: with ``W = diag(1 / (c var))``
    and ``W^-1/2 P W^-1/2 = V diag(e) V^T``, the fit is ``W^-1/2 V (V^T W^1/2 m) / (1 + lam e)``
    and ``tr(H) = sum 1 / (1 + lam e)``: 7 symmetric eigenproblems per axis instead of 343
    linear solves (one batched solve of small systems split across torch's threads: 85 ms per
    trajectory where the threads sleep between operations, 5-9 ms where they spin; now 1-1.5
    ms), the same fits to 2e-8 px.
    """
    n = measured.shape[0]
    if n <= _ORDER + 2:
        return measured.clone(), torch.ones(measured.shape[1], 1, dtype=torch.float64)
    m = measured.to(torch.float64).cpu()
    var = VARIANCE_CALIBRATION * variance.to(torch.float64).cpu().clamp(min=1e-8)
    penalties = _penalties(n)  # (T, n, n)
    lams = torch.tensor(_LAMBDAS, dtype=torch.float64)
    out = torch.empty_like(m)
    chosen = torch.empty(m.shape[1], penalties.shape[0] * len(_LAMBDAS), dtype=torch.float64)
    for axis in range(m.shape[1]):
        root = 1.0 / var[:, axis].sqrt()  # W^1/2
        scaled = penalties / (root[:, None] * root[None, :])  # W^-1/2 P W^-1/2, (T, n, n)
        eigenvalues, vectors = torch.linalg.eigh(scaled)
        eigenvalues = eigenvalues.clamp(min=0.0)  # P is positive semi-definite
        shrink = 1.0 / (1.0 + lams[None, :, None] * eigenvalues[:, None, :])  # (T, L, n)
        projected = vectors.mT @ (root * m[:, axis])  # (T, n)
        fit = torch.einsum("tij,tlj->tli", vectors, shrink * projected[:, None, :]) / root
        fit = fit.reshape(-1, n)  # (T * L, n)
        rss = ((m[:, axis] - fit) ** 2 / var[:, axis]).sum(dim=-1)
        risk = rss + 2.0 * shrink.sum(dim=-1).reshape(-1) - n
        if weights is None:
            risk = torch.nan_to_num(risk, nan=math.inf)
            chosen[axis] = torch.softmax(-0.5 * risk, dim=0)
            if not bool(torch.isfinite(chosen[axis]).all()):  # no fit with a finite risk
                chosen[axis] = torch.nn.functional.one_hot(torch.argmin(risk), risk.numel())
        else:
            chosen[axis] = weights[axis]
        out[:, axis] = chosen[axis] @ torch.nan_to_num(fit)
    return out.to(measured.device), chosen
