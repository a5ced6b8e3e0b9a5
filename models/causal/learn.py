"""Exact, incremental Bayesian learning of the causal weights, with change detection.

:class:`BayesianLinearModel` is Normal-Inverse-Gamma conjugate regression,
``y = x @ w + e``, ``e ~ N(0, s2)``, prior ``w | s2 ~ N(m0, s2 V0)``, ``s2 ~ IG(a0, b0)``.
Each :meth:`~BayesianLinearModel.update` is a rank-one (Sherman-Morrison) step, O(p**2), and gives
exactly the batch posterior (:func:`nig_posterior`). Marginal posteriors of the weights are
Student-t with ``2 a`` degrees of freedom.

:class:`ChangeDetector` asks whether the last exposures still follow the model learned before
them (an exact test that accounts for the correlation of their residuals); on an alarm,
:class:`CausalLearner` tempers the old evidence (a power prior with exponent ``discount``) so that
the new regime is learned quickly. The test is not on the learner's own one-step residuals: the
learner absorbs a new regime within a few exposures whenever the new data can be fitted by moving
the weights (thicker ice far outside the old range has high leverage and simply steepens the ice
weight), so those residuals show only a short transient.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from scipy import stats

from causalscope.models.causal.graph import edge_priors

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

    def residual(self, x: np.ndarray, y: float) -> float:
        """The standardised predictive residual of ``y`` at ``x``, without learning from it."""
        loc, scale, _ = self.predict(x)
        return (y - loc) / scale

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
    """Do the last ``window`` exposures still follow the model fitted before them?

    With ``reference`` the model learned from everything *before* the window (its posterior mean
    ``m``, unscaled covariance ``V`` and noise ``s2 = b / a``), the window's residuals
    ``r = y - X m`` are jointly ``N(0, s2 (I + X V X'))`` while the regime holds. Their sum,
    divided by its exact standard deviation ``sqrt(s2 (w + S' V S))`` (``S`` the sum of the
    window's rows), is a standard normal ``z``: the residuals' correlation through the
    reference's own error, its extrapolation to a factor that creeps (astigmatism) and a young
    reference's wide prior are all in the denominator, so the test needs no warm-up to stay
    calibrated. A new regime (a new grid: thicker ice, a new weight) shifts the residuals the same
    way and ``|z|`` grows with every exposure of the window it fills; one outlier cannot alarm,
    because each residual is clipped at ``clip`` of its own predictive sd first.

    The window test is slow when a new regime can partly be explained by extrapolating the old
    weights (its denominator then rightly grows), so a two-sided CUSUM on the learner's one-step
    residuals (allowance ``cusum_k``, threshold ``cusum_h``, silent for the first
    ``cusum_warmup``) runs beside it and catches the sharp transient such a change makes.

    Thresholds are set on the null. ``|z| > 4`` has a two-sided tail of 6e-5 per exposure (an
    upper bound: consecutive windows share most of their exposures); a CUSUM with ``k = 0.5,
    h = 10`` on residuals of sd 1.07 (a young model's) raises about one alarm per 20,000. Alarm
    rates and detection delays on synthetic sessions
    (:func:`models.causal.synthetic.draw_synthetic_session`) are measured by
    ``causalscope bench causal`` and ``tests/models/causal/test_learn.py`` (README). A change
    whose old weights, extrapolated, already predict most of the jump can go undetected; the
    learner then follows it without a reset.
    """

    window: int = 20
    threshold: float = 4.0
    clip: float = 4.0
    cusum_k: float = 0.5
    cusum_h: float = 10.0
    cusum_warmup: int = 20
    _hi: float = field(default=0.0, init=False)
    _lo: float = field(default=0.0, init=False)
    _seen: int = field(default=0, init=False)

    def cusum(self, z: float) -> bool:
        """Feed one one-step residual to the two-sided CUSUM; True on an alarm."""
        zc = min(max(z, -self.clip), self.clip)
        self._hi = max(0.0, self._hi + zc - self.cusum_k)
        self._lo = max(0.0, self._lo - zc - self.cusum_k)
        self._seen += 1
        return self._seen > self.cusum_warmup and max(self._hi, self._lo) > self.cusum_h

    def reset(self) -> None:
        self._hi = self._lo = 0.0
        self._seen = 0

    def __post_init__(self) -> None:
        if self.window < 1 or self.threshold <= 0 or self.clip <= 0:
            raise ValueError(
                f"need window >= 1, threshold > 0 and clip > 0, got {self.window}, "
                f"{self.threshold}, {self.clip}"
            )

    def statistic(self, reference: BayesianLinearModel, x: np.ndarray, y: np.ndarray) -> float:
        """The window's standardised residual sum ``z`` against ``reference`` (rows ``(w, p)``)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        y = np.asarray(y, dtype=float).reshape(-1)
        s2 = reference.b / reference.a
        v = reference.cov_unscaled
        resid = y - x @ reference.mean
        own_sd = np.sqrt(s2 * (1.0 + np.einsum("np,pq,nq->n", x, v, x)))
        resid = np.clip(resid, -self.clip * own_sd, self.clip * own_sd)
        total = x.sum(axis=0)
        return float(resid.sum() / math.sqrt(s2 * (y.size + total @ v @ total)))

    def alarm(self, z: float) -> bool:
        return abs(z) > self.threshold


@dataclass
class CausalLearner:
    """A model and its change detector: on an alarm the old evidence is tempered by ``discount``.

    ``reference`` is the model as it was before the detector's window (the last
    ``detector.window`` exposures of the current regime): it learns each exposure as that leaves
    the window. After an alarm the window restarts empty and the reference is the tempered model.
    One extra rank-one update per exposure, and the test itself is O(window * p**2).

    An exposure whose one-step residual exceeds ``outlier_z`` predictive sds (once the regime has
    ``outlier_after`` exposures) is not learned (a wild fit would otherwise inflate the noise
    estimate, and with it every interval, for the rest of the session); it still counts in the
    window and the CUSUM, clipped, so that a real change of that size is declared and then learned.
    Under the model such a residual has a probability of ~1e-6: good data are never dropped.
    """

    model: BayesianLinearModel
    detector: ChangeDetector = field(default_factory=ChangeDetector)
    discount: float = 0.02
    outlier_z: float = 6.0
    outlier_after: int = 20
    changes: list[int] = field(default_factory=list)
    outliers: list[int] = field(default_factory=list)
    seen: int = field(default=0, init=False)
    last_learned: bool = field(default=True, init=False)
    reference: BayesianLinearModel = field(init=False)
    _window: deque[tuple[np.ndarray, float, bool]] = field(default_factory=deque, init=False)
    _regime_n: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.reference = copy.deepcopy(self.model)

    def observe(self, x: np.ndarray, y: float) -> bool:
        """Update with one exposure; True if a regime change was declared at it."""
        index = self.seen
        self.seen += 1
        one_step = self.model.residual(x, y) if self._regime_n >= self.outlier_after else 0.0
        learned = self.last_learned = abs(one_step) <= self.outlier_z
        if learned:
            one_step = self.model.update(x, y)  # validates x and y first
        else:
            self.outliers.append(index)  # not learned; the detector still sees it, clipped
        self._regime_n += 1
        self._window.append((np.array(x, dtype=float).reshape(-1), float(y), learned))
        if len(self._window) > self.detector.window:
            old_x, old_y, old_learned = self._window.popleft()
            if old_learned:
                self.reference.update(old_x, old_y)
        rows = np.stack([row for row, _, _ in self._window])
        values = np.array([value for _, value, _ in self._window])
        window_alarm = self.detector.alarm(self.detector.statistic(self.reference, rows, values))
        if self.detector.cusum(one_step) or window_alarm:
            self.detector.reset()
            self.model.discount(self.discount)
            self.reference = copy.deepcopy(self.model)
            self._window.clear()
            self._regime_n = 0
            self.changes.append(index)
            return True
        return False
