"""A session's causal model, learned exposure by exposure: what one update reports.

:class:`SessionCausalModel` holds the resolution model (``d**2`` from the factors, with change
detection, :class:`~models.causal.learn.CausalLearner`) and the envelope model (the spectral-SNR
B-factor, :mod:`models.causal.envelope`). :meth:`~SessionCausalModel.observe` takes one
exposure's :class:`~models.records.CausalInputs` and returns a :class:`CausalUpdate`: each
cause's share of the resolution this exposure lost against the session's best, the session's
causes ranked with uncertainty, the convergence of every weight, and whether the regime changed.

Shares are reported in Angstrom of resolution. In ``d**2`` they are exact and additive
(:mod:`models.causal.attribution`); since ``d**2 - d_best**2 = (d - d_best)(d + d_best)``,
dividing every share by ``d + d_best`` (``d`` observed, ``d_best`` predicted at the session's
best factors) gives Angstrom shares that, with the unexplained rest, add up exactly to the
observed ``d - d_best``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from causalscope.models.causal.attribution import advice, attribute, rank_causes
from causalscope.models.causal.envelope import (
    ENVELOPE_FACTORS,
    ENVELOPE_PRIORS,
    EnvelopePrior,
    envelope_row,
)
from causalscope.models.causal.graph import causal_graph, design_matrix, edge_priors
from causalscope.models.causal.inputs import measurements
from causalscope.models.causal.learn import BayesianLinearModel, CausalLearner, ChangeDetector
from causalscope.models.records import CausalInputs

__all__ = ["CausalUpdate", "CauseShare", "RankedCause", "SessionCausalModel"]

#: Spread of a regressor below which its factor counts as not observed in the session.
_MIN_SPREAD = 1e-6
#: A regime this young is ranked after every exposure (a pass over at most this many rows): its
#: ranking changes fastest, and a short session must not be left with its first exposure's.
_RANK_EVERY_EXPOSURE_UNTIL = 100


@dataclass(frozen=True)
class CauseShare:
    """One cause's share of an exposure's lost resolution, Angstrom, with its sd."""

    cause: str
    share_angstrom: float
    sd_angstrom: float


@dataclass(frozen=True)
class RankedCause:
    """One cause over the session so far.

    ``mean_angstrom``/``sd_angstrom``: its mean share of the resolution lost per exposure;
    ``p_top``: the posterior probability that it is the largest; ``weight_mean``/``weight_sd``:
    its edge weight (A^2 of ``d**2`` per unit regressor) against ``tolerance``; ``observed``:
    whether the factor varied in the session at all (if not, nothing can be learned about it and
    it does not count for convergence).
    """

    cause: str
    rank: int
    mean_angstrom: float
    sd_angstrom: float
    p_top: float
    weight_mean: float
    weight_sd: float
    tolerance: float
    observed: bool
    advice: str

    @property
    def converged(self) -> bool:
        """Learned to within its tolerance (a factor that never varied has learned nothing)."""
        return self.observed and self.weight_sd <= self.tolerance


@dataclass(frozen=True)
class CausalUpdate:
    """What the model says after one exposure (see the module docstring)."""

    exposure_id: str
    index: int
    regime: int
    regime_change: bool
    observed_resolution_angstrom: float
    best_resolution_angstrom: float
    predicted_loss_angstrom: float
    predicted_loss_sd_angstrom: float
    unexplained_angstrom: float
    shares: tuple[CauseShare, ...]
    dominant_cause: str | None
    converged: bool
    ranking: tuple[RankedCause, ...]
    envelope: EnvelopePrior | None = None
    learned: bool = True
    """False when the fit was too far from the model's prediction to be learned from (an outlier,
    :class:`~models.causal.learn.CausalLearner`); its shares are still reported."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for JSON and the store); the envelope prior is left out, and so is
        ``learned`` (not stored: the session log says which exposures were not learned)."""
        return {
            "exposure_id": self.exposure_id,
            "index": self.index,
            "regime": self.regime,
            "regime_change": self.regime_change,
            "observed_resolution_angstrom": self.observed_resolution_angstrom,
            "best_resolution_angstrom": self.best_resolution_angstrom,
            "predicted_loss_angstrom": self.predicted_loss_angstrom,
            "predicted_loss_sd_angstrom": self.predicted_loss_sd_angstrom,
            "unexplained_angstrom": self.unexplained_angstrom,
            "dominant_cause": self.dominant_cause,
            "converged": self.converged,
            "shares": [s.__dict__ for s in self.shares],
            "ranking": [{**r.__dict__, "converged": r.converged} for r in self.ranking],
        }


@dataclass
class SessionCausalModel:
    """The session's two models and the history they attribute against.

    Parameters
    ----------
    discount
        How much of the old evidence survives a detected regime change (power prior).
    n_draws
        Posterior draws for each cause's probability of being the largest.
    ranking_every
        Recompute the session's ranking (a pass over the regime's exposures) after this many
        exposures once the regime has more than 100; in between the last ranking is reported.
        The exposure's own attribution is exact at every update.
    min_loss_angstrom
        A predicted loss below this names no dominant cause (the exposure is as good as the
        session's best).
    """

    discount: float = 0.02
    n_draws: int = 1000
    ranking_every: int = 10
    min_loss_angstrom: float = 0.05
    learner: CausalLearner = field(init=False)
    envelope: CausalLearner = field(init=False)
    tolerances: np.ndarray = field(init=False)
    _rows: np.ndarray = field(default_factory=lambda: np.empty((256, 8)), init=False)
    _d: np.ndarray = field(default_factory=lambda: np.empty(256), init=False)
    _n: int = field(default=0, init=False)
    _regime_start: int = field(default=0, init=False)
    _col_min: np.ndarray = field(default_factory=lambda: np.full(8, np.inf), init=False)
    _col_max: np.ndarray = field(default_factory=lambda: np.full(8, -np.inf), init=False)
    _last_ranking: tuple[RankedCause, ...] = field(default=(), init=False)
    _ranked_at: int = field(default=-1, init=False)
    _envelope_n: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        graph = causal_graph()
        _, _, _, tolerances = edge_priors(graph)
        self.tolerances = tolerances
        self.learner = CausalLearner(
            BayesianLinearModel.from_graph(graph), ChangeDetector(), discount=self.discount
        )
        means = np.array([ENVELOPE_PRIORS[n][0] for n in ENVELOPE_FACTORS])
        sds = np.array([ENVELOPE_PRIORS[n][1] for n in ENVELOPE_FACTORS])
        self.envelope = CausalLearner(
            BayesianLinearModel(means, sds, noise_sd=50.0, names=list(ENVELOPE_FACTORS)),
            ChangeDetector(),
            discount=self.discount,
        )

    @property
    def n(self) -> int:
        """Exposures observed."""
        return self._n

    @property
    def regime(self) -> int:
        """Regime changes declared so far."""
        return len(self.learner.changes)

    def envelope_prior(self) -> EnvelopePrior | None:
        """The envelope model's posterior, or None before it has learned from any fit."""
        if self._envelope_n == 0:
            return None
        model = self.envelope.model
        cov = model.cov()
        return EnvelopePrior(
            names=tuple(model.names),
            mean=tuple(float(v) for v in model.mean),
            cov=tuple(tuple(float(v) for v in row) for row in cov),
            residual_sd=math.sqrt(model.b / (model.a - 1.0)) if model.a > 1 else math.inf,
            n_exposures=self._envelope_n,
        )

    def observe(self, exposure_id: str, inputs: CausalInputs) -> CausalUpdate:
        """Learn from one exposure and report (see the module docstring)."""
        d = inputs.fit_resolution_angstrom
        if not (math.isfinite(d) and d > 0):
            raise ValueError(f"{exposure_id}: fit_resolution_angstrom must be > 0, got {d}")
        values = measurements(inputs)
        x = design_matrix(values)[0]
        changed = self.learner.observe(x, d * d)
        if changed:
            self._regime_start = self.n  # this exposure opens the new regime
            self._col_min[:] = np.inf
            self._col_max[:] = -np.inf
            self._ranked_at = -1
        if self._n == self._d.size:  # grow by doubling: amortised O(1) per exposure
            self._rows = np.concatenate([self._rows, np.empty_like(self._rows)])
            self._d = np.concatenate([self._d, np.empty_like(self._d)])
        self._rows[self._n] = x
        self._d[self._n] = d
        self._n += 1
        np.minimum(self._col_min, x, out=self._col_min)
        np.maximum(self._col_max, x, out=self._col_max)
        if inputs.ssnr_bfactor_angstrom2 is not None and math.isfinite(
            inputs.ssnr_bfactor_angstrom2
        ):
            self.envelope.observe(envelope_row(values), inputs.ssnr_bfactor_angstrom2)
            self._envelope_n += 1
        return self._report(exposure_id, changed, self.learner.last_learned)

    def _report(self, exposure_id: str, changed: bool, learned: bool = True) -> CausalUpdate:
        model = self.learner.model
        rows = self._rows[self._regime_start : self._n]
        d_obs = self._d[self._regime_start : self._n]
        # the session's best per factor (best_factors, from the running extremes: O(1))
        x_best = np.where(model.mean >= 0, self._col_min, self._col_max)
        d_best = math.sqrt(max(float(x_best @ model.mean), 1.0))
        attribution = attribute(model, rows[-1:], x_best, np.array([d_obs[-1] ** 2]))
        scale = 1.0 / (d_obs[-1] + d_best)
        shares = tuple(
            CauseShare(name, float(s) * scale, float(sd) * scale)
            for name, s, sd in zip(
                attribution.names, attribution.share[0], attribution.share_sd[0], strict=True
            )
        )
        loss = float(attribution.predicted_loss[0]) * scale
        dominant = None
        if loss >= self.min_loss_angstrom:
            dominant = max(shares, key=lambda s: s.share_angstrom).cause
        young = self.n - self._regime_start <= _RANK_EVERY_EXPOSURE_UNTIL
        if young or self._ranked_at < 0 or self.n - self._ranked_at >= self.ranking_every:
            self._last_ranking = tuple(self._ranking(rows, d_obs, x_best, d_best))
            self._ranked_at = self.n
        ranking = self._last_ranking
        observed_ranking = [r for r in ranking if r.observed]
        return CausalUpdate(
            exposure_id=exposure_id,
            index=self.n,
            regime=self.regime,
            regime_change=changed,
            observed_resolution_angstrom=float(d_obs[-1]),
            best_resolution_angstrom=d_best,
            predicted_loss_angstrom=loss,
            predicted_loss_sd_angstrom=float(attribution.predicted_loss_sd[0]) * scale,
            unexplained_angstrom=float(attribution.unexplained[0]) * scale,
            shares=shares,
            dominant_cause=dominant,
            converged=bool(observed_ranking) and all(r.converged for r in observed_ranking),
            ranking=tuple(ranking),
            envelope=self.envelope_prior(),
            learned=learned,
        )

    def _ranking(
        self, rows: np.ndarray, d_obs: np.ndarray, x_best: np.ndarray, d_best: float
    ) -> list[RankedCause]:
        model = self.learner.model
        ranks = rank_causes(
            model,
            rows,
            x_best,
            n_draws=self.n_draws,
            seed=self.n,
            row_scale=1.0 / (d_obs + d_best),
        )
        sds = model.sd()
        spread = self._col_max - self._col_min
        index = {name: j for j, name in enumerate(model.names)}
        out = []
        for position, r in enumerate(ranks):
            j = index[r.name]
            out.append(
                RankedCause(
                    cause=r.name,
                    rank=position + 1,
                    mean_angstrom=r.mean,
                    sd_angstrom=r.sd,
                    p_top=r.p_top,
                    weight_mean=float(model.mean[j]),
                    weight_sd=float(sds[j]),
                    tolerance=float(self.tolerances[j]),
                    observed=bool(spread[j] > _MIN_SPREAD),
                    advice=advice(r.name),
                )
            )
        return out
