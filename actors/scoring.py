"""The session's scorer: each committed exposure and each reconstruction update scored, with
the obligations behind its LogicScore (the design's "Scoring"; math in :mod:`models.scoring`).

:class:`SessionScorer` is a plain class: scoring an exposure costs about 5 milliseconds (the
solver's obligations), so the daemon runs it beside its commits. It holds only what the next
score needs from the past (the recent V values for Meta, the particle counts for ImpactFore),
and :meth:`SessionScorer.replay` rebuilds that from the stored scores after a restart.
Components not measured yet are ``None`` and left out of V (:func:`models.scoring.combine`).

Each exposure's expected contribution in Angstrom (:func:`models.scoring.contribution_angstrom`)
uses the latest reconstruction update's forecast that has an SSNR fit (after a restart, from
the next one on), towards the session's end where a plan gives one, else towards the map's
particles now; the exposure's particles count as many as the map keeps of the session's (its
particles over the session's picked so far, when the forecast came).
"""

from __future__ import annotations

import bisect
import dataclasses
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from causalscope.models.scoring import (
    HyperParameters,
    ObligationResult,
    ObligationSettings,
    ReconstructionFacts,
    Score,
    ScoreComponents,
    ScoreWeights,
    combine,
    contribution_angstrom,
    exposure_facts,
    exposure_obligations,
    impact_fore,
    logic_score,
    meta_stability,
    overlapping_picks,
    ranking_stability,
    reconstruction_obligations,
    signal_weight,
)

if TYPE_CHECKING:
    from causalscope.actors._evaluation_results import EvaluationUpdate, ForecastUpdate
    from causalscope.config import ScoringSettings
    from causalscope.models.reconstruction.forecast import SsnrForecast
    from causalscope.models.records import ExposureRecord

__all__ = ["ScoredSubject", "SessionScorer"]

Kind = Literal["exposure", "reconstruction"]


@dataclass(frozen=True)
class ScoredSubject:
    """The score of one exposure or one reconstruction update, with what it was made of."""

    kind: Kind
    subject: str
    components: ScoreComponents
    score: Score | None
    obligations: list[ObligationResult] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    n_particles: int = 0
    #: the particles weighted by their exposure's signal (ImpactFore's measure)
    weighted_particles: float = 0.0
    #: how much better (A) the session's map is expected to be with this exposure's particles
    #: than without them (None before a forecast)
    contribution_angstrom: float | None = None
    #: V of the components other than Meta: what Meta compares over the recent window
    v_without_meta: float | None = None
    #: ``accept``, ``reject`` or ``look`` (exposures only), and why
    recommendation: str | None = None
    reason: str = ""

    @property
    def failed(self) -> list[ObligationResult]:
        return [o for o in self.obligations if not o.holds]

    def to_dict(self) -> dict[str, Any]:
        """The published form (topic ``score``)."""
        c = self.components
        return {
            "kind": self.kind,
            "subject": self.subject,
            "logic": c.logic,
            "novelty": c.novelty,
            "impact": c.impact,
            "delta_repro": c.delta_repro,
            "meta": c.meta,
            "v": None if self.score is None else self.score.v,
            "hyperscore": None if self.score is None else self.score.hyperscore,
            "weakest": None if self.score is None else self.score.weakest,
            "terms": {} if self.score is None else dict(self.score.terms),
            "weights": dict(self.weights),
            "n_particles": self.n_particles,
            "weighted_particles": self.weighted_particles,
            "contribution_angstrom": self.contribution_angstrom,
            "v_without_meta": self.v_without_meta,
            "recommendation": self.recommendation,
            "reason": self.reason,
            "obligations": [o.to_dict() for o in self.obligations],
        }


class SessionScorer:
    """Scores of one session's exposures (in commit order) and reconstruction updates."""

    def __init__(self, settings: ScoringSettings) -> None:
        self.settings = settings
        self.weights = ScoreWeights(
            logic=settings.w_logic,
            novelty=settings.w_novelty,
            impact=settings.w_impact,
            delta_repro=settings.w_delta_repro,
            meta=settings.w_meta,
        )
        self.parameters = HyperParameters(
            beta=settings.beta, gamma=settings.gamma, kappa=settings.kappa
        )
        self.obligation_settings = ObligationSettings(
            sigmas=settings.sigmas,
            min_spacing_diameters=settings.min_spacing_diameters,
            dose_tolerance=settings.dose_tolerance,
            max_drift_rate_angstrom_per_s=settings.max_drift_rate_angstrom_per_s,
            class_margin=settings.class_margin,
            symmetry_correlation=settings.symmetry_correlation,
        )
        self._values: deque[float] = deque(maxlen=settings.meta_window)
        # the window's components (Meta aside) and the V each got then: scored again with the
        # current weights, they say whether new weights reorder the recent exposures
        self._window: deque[tuple[ScoreComponents, float]] = deque(maxlen=settings.meta_window)
        # the session's positive weighted particle counts, sorted (ImpactFore's typical is their
        # median): 8 bytes per exposure with particles, and the median without a sort
        self._particles = array("d")
        # the session's particles, weighted and plain: the average particle's weight
        self._weighted_total = 0.0
        self._plain_total = 0.0
        # the latest forecast with an SSNR fit, the particle count it is read at, and the
        # share of the session's particles its map holds (2D selection leaves some out)
        self._forecast: SsnrForecast | None = None
        self._horizon = 0.0
        self._kept = 1.0

    def weights_used(self) -> dict[str, float]:
        """w1..w5 and beta, gamma, kappa, as stored with each score."""
        w, p = self.weights, self.parameters
        return {
            "logic": w.logic,
            "novelty": w.novelty,
            "impact": w.impact,
            "delta_repro": w.delta_repro,
            "meta": w.meta,
            "beta": p.beta,
            "gamma": p.gamma,
            "kappa": p.kappa,
        }

    def replay(self, history: Iterable[Sequence[float | None]]) -> None:
        """Take back the stored exposures' (V without Meta, weighted particles[, logic,
        novelty, impact, delta_repro[, particles]]), in commit order, after a restart."""
        for v, weighted, *rest in history:
            components = ScoreComponents(*rest[:4]) if len(rest) >= 4 else None
            plain = float(rest[4] or 0.0) if len(rest) == 5 else 0.0
            self._remember(v, float(weighted or 0.0), plain, components)

    def _remember(
        self,
        v: float | None,
        weighted: float,
        plain: float,
        components: ScoreComponents | None = None,
    ) -> None:
        if v is not None:
            self._values.append(v)
            if components is not None:
                self._window.append((components, v))
        if weighted > 0:
            bisect.insort(self._particles, weighted)
        self._weighted_total += weighted
        self._plain_total += plain

    def use_forecast(self, forecast: ForecastUpdate) -> None:
        """Read the exposures' contributions from ``forecast`` on (one without an SSNR fit
        leaves the last one in use)."""
        from causalscope.models.reconstruction.forecast import SsnrForecast

        b, doubled = forecast.ssnr_bfactor_angstrom2, forecast.resolution_at_double_angstrom
        if b is None or doubled is None or forecast.particles <= 0:
            return
        self._forecast = SsnrForecast.through(
            doubled, particles=2 * forecast.particles, bfactor_angstrom2=b
        )
        self._horizon = float(forecast.particles_at_end or forecast.particles)
        self._kept = min(1.0, forecast.particles / max(self._plain_total, 1.0))

    def _contribution(self, particles: int, weighted: float) -> float | None:
        """:func:`contribution_angstrom` of an exposure's particles, counted in the session's
        average particles (this exposure's included) and as many of them as the map keeps."""
        plain = self._plain_total + particles
        if self._forecast is None or weighted <= 0 or plain <= 0:
            return None
        average = (self._weighted_total + weighted) / plain
        return contribution_angstrom(
            self._kept * weighted / average, forecast=self._forecast, horizon=self._horizon
        )

    def _ranking(self) -> float | None:
        """:func:`ranking_stability` of the window: the V its exposures got, against V with
        the current weights (1 while the weights are those they were scored with)."""
        then, now = [], []
        for components, v in self._window:
            again = combine(components, self.weights, self.parameters)
            if again is not None:
                then.append(v)
                now.append(again.v)
        return ranking_stability(then, now)

    def typical_particles(self) -> float | None:
        """The median weighted particle count of the session's exposures with particles so far
        (None before the first)."""
        kept = self._particles
        n = len(kept)
        if n == 0:
            return None
        return kept[n // 2] if n % 2 else (kept[n // 2 - 1] + kept[n // 2]) / 2

    def score_exposure(self, record: ExposureRecord) -> ScoredSubject:
        """Score a committed exposure (and remember it for the next ones)."""
        facts = exposure_facts(record)
        obligations = [] if facts is None else exposure_obligations(facts, self.obligation_settings)
        picking = record.picking
        usable = record.status != "fail" and picking is not None
        particles = picking.n_particles if usable and picking is not None else 0
        fit = None if record.ctf is None else record.ctf.fit_resolution_angstrom
        alone = max(0, particles - self._overlapping(record)) if particles else 0
        weighted = alone * signal_weight(
            fit, at_resolution_angstrom=self.settings.impact_resolution_angstrom
        )
        typical = self.typical_particles()
        impact = impact_fore(weighted, typical=typical)
        logic = logic_score(obligations)
        repro = None if record.repro is None else record.repro.delta_repro
        # the exposure's distance from known junk: the image triage's P(usable)
        novelty = None if record.triage is None else record.triage.p_usable
        # Meta of the window that ends with this exposure: V without Meta first, then with it
        without_meta = ScoreComponents(
            logic=logic, novelty=novelty, impact=impact, delta_repro=repro
        )
        partial = combine(without_meta, self.weights, self.parameters)
        meta = None
        if partial is not None:
            meta = meta_stability([*self._values, partial.v], window=self.settings.meta_window)
            ranking = self._ranking()
            if meta is not None and ranking is not None:
                meta *= ranking
        components = dataclasses.replace(without_meta, meta=meta)
        score = combine(components, self.weights, self.parameters)
        contribution = self._contribution(particles, weighted)
        self._remember(None if partial is None else partial.v, weighted, particles, without_meta)
        recommendation, reason = self._recommend(record, score, obligations)
        return ScoredSubject(
            kind="exposure",
            subject=record.exposure_id,
            components=components,
            score=score,
            obligations=obligations,
            weights=self.weights_used(),
            n_particles=particles,
            weighted_particles=weighted,
            contribution_angstrom=contribution,
            v_without_meta=None if partial is None else partial.v,
            recommendation=recommendation,
            reason=reason,
        )

    def _overlapping(self, record: ExposureRecord) -> int:
        """The exposure's picks that overlap another (:func:`overlapping_picks`)."""
        picking, apix = record.picking, record.pixel_size_angstrom
        if picking is None or not picking.picks_xy_px or not apix:
            return 0
        diameter_px = picking.particle_diameter_angstrom / apix
        if not diameter_px > 0:
            return 0
        found = overlapping_picks(
            np.asarray(picking.picks_xy_px),
            diameter_px=diameter_px,
            within=self.settings.overlap_diameters,
        )
        return min(found, picking.n_particles)

    def _recommend(
        self, record: ExposureRecord, score: Score | None, obligations: list[ObligationResult]
    ) -> tuple[str, str]:
        """Accept, reject or look, with the reason an operator reads first."""
        s = self.settings
        if record.status == "fail":
            failed = [f.code for f in record.flags if f.severity == "fail"]
            return "reject", f"the sanity gate failed it ({', '.join(failed) or 'no reason'})"
        broken = [o for o in obligations if not o.holds]
        if broken:
            return "reject", f"{broken[0].name}: {broken[0].message}"
        if score is None:
            return "look", "nothing to score it by"
        hyper, weakest = score.hyperscore, score.weakest or "nothing"
        if hyper >= s.accept_above:
            return "accept", f"HyperScore {hyper:.1f} >= {s.accept_above:g}"
        if hyper < s.reject_below:
            return "reject", f"HyperScore {hyper:.1f} < {s.reject_below:g}, held down by {weakest}"
        return "look", f"HyperScore {hyper:.1f}, held down by {weakest}"

    def score_reconstruction(self, update: EvaluationUpdate) -> ScoredSubject | None:
        """Score an update that carries a map (``None`` for a classes-only update)."""
        map_update = update.map
        if map_update is None:
            return None
        resolutions = [
            row.resolution_angstrom
            for row in (update.class_set.classes if update.class_set is not None else [])
            if row.selected and row.resolution_angstrom is not None
        ]
        facts = ReconstructionFacts(
            version=update.version,
            pixel_size_angstrom=map_update.pixel_size_angstrom,
            resolution_angstrom=map_update.resolution_angstrom,
            best_class_resolution_angstrom=min(resolutions) if resolutions else None,
            symmetry=map_update.symmetry,
            symmetry_correlations=tuple(map_update.symmetry_correlations),
        )
        obligations = reconstruction_obligations(facts, self.obligation_settings)
        impact = None
        forecast = update.forecast
        if forecast is not None:
            self.use_forecast(forecast)
        if forecast is not None and forecast.particles_needed is not None:
            have = float(map_update.particles)
            impact = have / max(have, float(forecast.particles_needed))
        # a map's obligations, forecast and Novelty against the index of known structures:
        # the exposure terms (Meta, DeltaRepro) do not apply
        components = ScoreComponents(
            logic=logic_score(obligations), impact=impact, novelty=map_update.novelty
        )
        return ScoredSubject(
            kind="reconstruction",
            subject=str(update.version),
            components=components,
            score=combine(components, self.weights, self.parameters),
            obligations=obligations,
            weights=self.weights_used(),
            n_particles=map_update.particles,
        )
