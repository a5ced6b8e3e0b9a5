"""Attribution: which cause cost how much resolution, per exposure and per session.

In the linear model ``d**2 = x @ w + e`` the loss of an exposure against the session's best is
``(x - x_best) @ w`` exactly, and cause ``k``'s share is ``(x_k - x_best_k) * w_k``: the shares sum
to the predicted loss, and the observed loss is that sum plus an unexplained residual. ``x_best``
takes, for each factor, the best value seen in the session (the smallest ``w_k x_k``).
Uncertainties come from the weights' posterior covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from causalscope.models.causal.learn import BayesianLinearModel

__all__ = [
    "ADVICE",
    "Attribution",
    "CauseRank",
    "advice",
    "attribute",
    "best_factors",
    "rank_causes",
]

ADVICE: dict[str, str] = {
    "ice_thickness": "Ice too thick: target thinner squares/holes (ice filter in the atlas), "
    "or adjust blotting time/force for the next grids.",
    "dose": "Exposure off target: re-measure the dose rate over vacuum and set the exposure time "
    "for ~40-60 e/A^2.",
    "drift": "Drift: add a delay after stage moves, use more shots per hole (beam-image shift) "
    "and check the cryo-holder/stage has settled.",
    "defocus": "Defocus too high: narrow the defocus range toward 0.8-1.5 um and check autofocus.",
    "astigmatism": "Astigmatism: re-correct the objective stigmator (and coma-free alignment); "
    "it has crept since the last correction.",
    "beam_tilt": "Beam tilt / coma: redo coma-free alignment and enable image-shift coma "
    "compensation, or reduce the image-shift radius.",
    "particle_density": "Few particles: pick squares with more particles or raise the sample "
    "concentration; empty holes give weak Thon rings.",
}


def advice(cause: str) -> str:
    """Short operator advice for a cause named as in :data:`models.causal.graph.FACTORS`."""
    try:
        return ADVICE[cause]
    except KeyError:
        raise ValueError(f"no advice for cause {cause!r}; known: {sorted(ADVICE)}") from None


def best_factors(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per column the session's best value: the one minimising ``w_k x_k`` over rows ``(n, p)``.

    Column 0 (the intercept) is kept as is.
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    w = np.asarray(weights, dtype=float)
    if x.shape[-1] != w.size:
        raise ValueError(f"x has {x.shape[-1]} columns, weights {w.size}")
    return np.where(w >= 0, x.min(axis=0), x.max(axis=0))


@dataclass(frozen=True)
class Attribution:
    """Per-exposure attribution over the causes (intercept excluded).

    ``share (n, k)`` in A^2 of ``d**2``, ``share_sd (n, k)``, ``predicted_loss (n,)`` (the sum of
    the shares), ``unexplained (n,)`` (observed loss minus predicted; NaN without ``y``).
    """

    names: list[str]
    share: np.ndarray
    share_sd: np.ndarray
    predicted_loss: np.ndarray
    predicted_loss_sd: np.ndarray
    unexplained: np.ndarray

    def dominant(self) -> list[str]:
        """The cause with the largest share, per exposure."""
        return [self.names[j] for j in np.argmax(self.share, axis=1)]


def attribute(
    model: BayesianLinearModel,
    x: np.ndarray,
    x_best: np.ndarray,
    y: np.ndarray | None = None,
) -> Attribution:
    """Each cause's share of the loss of rows ``x (n, p)`` against ``x_best (p,)``."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    if x.shape[-1] != model.p or np.shape(x_best) != (model.p,):
        raise ValueError(f"x {x.shape} and x_best {np.shape(x_best)} must have {model.p} columns")
    dx = x - x_best
    dx[:, 0] = 0.0
    cov = model.cov()
    share = dx * model.mean
    share_sd = np.abs(dx) * np.sqrt(np.diag(cov))
    loss = share.sum(axis=1)
    loss_sd = np.sqrt(np.einsum("ni,ij,nj->n", dx, cov, dx))
    if y is None:
        unexplained = np.full(x.shape[0], np.nan)
    else:
        y = np.asarray(y, dtype=float).reshape(-1)
        unexplained = y - float(x_best @ model.mean) - loss
    return Attribution(model.names[1:], share[:, 1:], share_sd[:, 1:], loss, loss_sd, unexplained)


@dataclass(frozen=True)
class CauseRank:
    """One cause's mean share over the session, its sd, and P(it is the largest)."""

    name: str
    mean: float
    sd: float
    p_top: float


def rank_causes(
    model: BayesianLinearModel,
    x: np.ndarray,
    x_best: np.ndarray,
    *,
    n_draws: int = 2000,
    seed: int = 0,
    row_scale: np.ndarray | None = None,
) -> list[CauseRank]:
    """The causes ranked by their mean share of the session's loss, largest first.

    Mean and sd are exact (the mean share is linear in the weights); ``p_top`` is estimated from
    ``n_draws`` draws of the weights' multivariate-t posterior. ``row_scale (n,)`` multiplies
    each row's shares first (e.g. ``1 / (d + d_best)`` for shares in Angstrom).
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    diff = x - x_best
    if row_scale is not None:
        diff = diff * np.asarray(row_scale, dtype=float).reshape(-1, 1)
    dx = diff.mean(axis=0)
    dx[0] = 0.0
    mean = dx * model.mean
    sd = np.abs(dx) * model.sd()
    rng = np.random.default_rng(seed)
    scale = model.b / model.a * model.cov_unscaled
    dof = 2 * model.a
    z = rng.multivariate_normal(np.zeros(model.p), scale, size=n_draws)
    g = rng.chisquare(dof, size=(n_draws, 1)) / dof
    draws = model.mean + z / np.sqrt(g)
    top = np.argmax((draws * dx)[:, 1:], axis=1)
    p_top = np.bincount(top, minlength=model.p - 1) / n_draws
    ranks = [
        CauseRank(model.names[j + 1], float(mean[j + 1]), float(sd[j + 1]), float(p_top[j]))
        for j in range(model.p - 1)
    ]
    return sorted(ranks, key=lambda r: r.mean, reverse=True)
