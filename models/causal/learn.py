"""Exact, incremental Bayesian learning of the causal weights, with change detection.

:class:`BayesianLinearModel` is Normal-Inverse-Gamma conjugate regression,
``y = x @ w + e``, ``e ~ N(0, s2)``, prior ``w | s2 ~ N(m0, s2 V0)``, ``s2 ~ IG(a0, b0)``.
Each :meth:`~BayesianLinearModel.update` is a rank-one (Sherman-Morrison) step, O(p**2), and gives
exactly the batch posterior (:func:`nig_posterior`). Marginal posteriors of the weights are
Student-t with ``2 a`` degrees of freedom.

:class:`ChangeDetector` is a two-sided CUSUM on the standardised one-step predictive residuals; on
an alarm, :class:`CausalLearner` tempers the old evidence (a power prior with exponent
``discount``) so that the new regime is learned quickly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from scipy import stats

from models.causal.graph import edge_priors

__all__ = [
    "BayesianLinearModel",
    "CausalLearner",
    "ChangeDetector",
    "NigPosterior",
    "nig_posterior",
]


@dataclass(frozen=True)
class NigPosterior:
    """Normal-Inverse-Gamma parameters: ``w | s2 ~ N(mean, s2 cov_unscaled)``, ``s2 ~ IG(a, b)``."""

    mean: np.ndarray
    cov_unscaled: np.ndarray
    a: float
    b: float


def nig_posterior(
    x: np.ndarray,
    y: np.ndarray,
    *,
    prior_mean: np.ndarray,
    prior_cov_unscaled: np.ndarray,
    a0: float,
    b0: float,
) -> NigPosterior:
    """The closed-form batch posterior for rows ``x (n, p)`` and outcomes ``y (n,)``."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    y = np.asarray(y, dtype=float).reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]} values")
    prec0 = np.linalg.inv(prior_cov_unscaled)
    prec = prec0 + x.T @ x
    cov = np.linalg.inv(prec)
    mean = cov @ (prec0 @ prior_mean + x.T @ y)
    a = a0 + 0.5 * y.size
    b = b0 + 0.5 * float(y @ y + prior_mean @ prec0 @ prior_mean - mean @ prec @ mean)
    return NigPosterior(mean, cov, a, b)


class BayesianLinearModel:
    """Conjugate linear-Gaussian regression updated one observation at a time.

    Parameters
    ----------
    prior_mean, prior_sd
        ``(p,)`` prior mean and standard deviation of each weight (physics priors).
    noise_sd
        Prior guess of the noise standard deviation (the mean of ``s2`` is ``noise_sd**2``).
    noise_dof
        Prior degrees of freedom of the noise (``a0 = noise_dof / 2``); must be > 2.
    forgetting
        Exponential forgetting factor in (0, 1]: 1 keeps all evidence (exact posterior); below 1,
        before each update every natural parameter (prior included) is scaled by it.
    """

    def __init__(
        self,
        prior_mean: np.ndarray,
        prior_sd: np.ndarray,
        *,
        noise_sd: float,
        noise_dof: float = 4.0,
        forgetting: float = 1.0,
        names: list[str] | None = None,
    ) -> None:
        m0 = np.asarray(prior_mean, dtype=float).reshape(-1)
        sd0 = np.asarray(prior_sd, dtype=float).reshape(-1)
        if m0.shape != sd0.shape:
            raise ValueError(f"prior_mean {m0.shape} and prior_sd {sd0.shape} differ in shape")
        if np.any(sd0 <= 0):
            raise ValueError(f"prior_sd must be > 0, got {sd0}")
        if noise_sd <= 0 or noise_dof <= 2:
            raise ValueError(f"need noise_sd > 0 and noise_dof > 2, got {noise_sd}, {noise_dof}")
        if not 0 < forgetting <= 1:
            raise ValueError(f"forgetting must be in (0, 1], got {forgetting}")
        self.names = names if names is not None else [f"w{i}" for i in range(m0.size)]
        self.forgetting = forgetting
        self.a0 = noise_dof / 2
        # E[s2] = b0 / (a0 - 1) = noise_sd**2, and s2 * V0 has the prior variances sd0**2.
        self.b0 = noise_sd**2 * (self.a0 - 1)
        self.m0 = m0
        self.v0 = np.diag(sd0**2 / noise_sd**2)
        self.mean = m0.copy()
        self.cov_unscaled = self.v0.copy()
        self.a = self.a0
        self.b = self.b0
        self.n = 0

    @classmethod
    def from_graph(cls, graph: nx.DiGraph, **kwargs: float) -> BayesianLinearModel:
        """A model whose priors are the graph's edge priors (intercept first)."""
        names, means, sds, _ = edge_priors(graph)
        noise_sd = float(kwargs.pop("noise_sd", 2.0))
        return cls(means, sds, noise_sd=noise_sd, names=names, **kwargs)

    @property
    def p(self) -> int:
        return self.mean.size

    def predict(self, x: np.ndarray) -> tuple[float, float, float]:
        """Predictive Student-t of ``y`` at ``x (p,)``: ``(loc, scale, dof)``."""
        x = np.asarray(x, dtype=float)
        vx = self.cov_unscaled @ x
        return float(x @ self.mean), math.sqrt(self.b / self.a * (1.0 + x @ vx)), 2 * self.a

    def update(self, x: np.ndarray, y: float) -> float:
        """Add one observation; return its standardised predictive residual (before update)."""
        x = np.asarray(x, dtype=float).reshape(-1)
        if x.size != self.p:
            raise ValueError(f"x has {x.size} entries, the model {self.p} weights")
        if not math.isfinite(y) or not np.all(np.isfinite(x)):
            raise ValueError(f"non-finite observation: x={x}, y={y}")
        if self.forgetting < 1.0:
            lam = self.forgetting
            self.cov_unscaled /= lam
            self.a *= lam
            self.b *= lam
        vx = self.cov_unscaled @ x
        q = 1.0 + float(x @ vx)
        resid = y - float(x @ self.mean)
        z = resid / math.sqrt(self.b / self.a * q)
        k = vx / q
        self.mean += k * resid
        self.cov_unscaled -= np.outer(k, vx)
        self.a += 0.5
        self.b += 0.5 * resid * resid / q
        self.n += 1
        return z

    def posterior(self) -> NigPosterior:
        return NigPosterior(self.mean.copy(), self.cov_unscaled.copy(), self.a, self.b)

    def cov(self) -> np.ndarray:
        """Marginal posterior covariance of the weights, ``b / (a - 1) * V``."""
        return self.b / (self.a - 1.0) * self.cov_unscaled

    def sd(self) -> np.ndarray:
        """Marginal posterior standard deviation of each weight."""
        return np.sqrt(np.diag(self.cov()))

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval of each weight (Student-t marginals)."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        scale = np.sqrt(self.b / self.a * np.diag(self.cov_unscaled))
        t = float(stats.t.ppf(0.5 + level / 2, df=2 * self.a))
        return self.mean - t * scale, self.mean + t * scale

    def converged(self, tolerances: np.ndarray) -> bool:
        """True when every weight's posterior sd is within its tolerance (inf: not required)."""
        tol = np.asarray(tolerances, dtype=float)
        if tol.shape != self.mean.shape:
            raise ValueError(f"tolerances {tol.shape} vs weights {self.mean.shape}")
        return bool(np.all(self.sd() <= tol))

    def discount(self, delta: float) -> None:
        """Temper the evidence so far by ``delta`` in [0, 1] (a power prior; 0 forgets all).

        The natural parameters (precision, precision @ mean, ``a``, ``2b + m' P m``) are linear
        in the data, so ``theta = theta0 + delta * (theta - theta0)`` is exact. O(p**3).
        """
        if not 0 <= delta <= 1:
            raise ValueError(f"delta must be in [0, 1], got {delta}")
        prec0 = np.linalg.inv(self.v0)
        prec = np.linalg.inv(self.cov_unscaled)
        eta0, eta = prec0 @ self.m0, prec @ self.mean
        c0 = 2 * self.b0 + self.m0 @ eta0
        c = 2 * self.b + self.mean @ eta
        prec_new = prec0 + delta * (prec - prec0)
        eta_new = eta0 + delta * (eta - eta0)
        cov_new = np.linalg.inv(prec_new)
        self.cov_unscaled = np.asarray(0.5 * (cov_new + cov_new.T), dtype=np.float64)
        self.mean = self.cov_unscaled @ eta_new
        self.a = self.a0 + delta * (self.a - self.a0)
        c_new = c0 + delta * (c - c0)
        self.b = max(0.5 * float(c_new - self.mean @ eta_new), 1e-12)


@dataclass
class ChangeDetector:
    """Two-sided CUSUM on standardised residuals ``z``.

    ``k`` is the allowance (half the smallest shift worth detecting, in sigmas), ``h`` the alarm
    threshold, ``clip`` bounds a single residual's push (an outlier alone cannot alarm), and no
    alarm is raised in the first ``warmup`` residuals (heavy-tailed while the model is young).
    """

    k: float = 0.5
    h: float = 8.0
    clip: float = 4.0
    warmup: int = 20
    _hi: float = field(default=0.0, init=False)
    _lo: float = field(default=0.0, init=False)
    _seen: int = field(default=0, init=False)

    def update(self, z: float) -> bool:
        """Feed one residual; True on an alarm (the statistic then restarts)."""
        zc = min(max(z, -self.clip), self.clip)
        self._hi = max(0.0, self._hi + zc - self.k)
        self._lo = max(0.0, self._lo - zc - self.k)
        self._seen += 1
        if self._seen > self.warmup and max(self._hi, self._lo) > self.h:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self._hi = self._lo = 0.0
        self._seen = 0


@dataclass
class CausalLearner:
    """A model and its change detector: on an alarm the old evidence is tempered by ``discount``."""

    model: BayesianLinearModel
    detector: ChangeDetector = field(default_factory=ChangeDetector)
    discount: float = 0.02
    changes: list[int] = field(default_factory=list)

    def observe(self, x: np.ndarray, y: float) -> bool:
        """Update with one exposure; True if a regime change was declared at it."""
        index = self.model.n
        z = self.model.update(x, y)
        if self.detector.update(z):
            self.model.discount(self.discount)
            self.changes.append(index)
            return True
        return False
