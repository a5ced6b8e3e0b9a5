"""The live session's scores: each committed exposure and each reconstruction update with a
map is scored (:class:`causalscope.actors.scoring.SessionScorer`), stored with its
obligations, published (topic ``score``), and a failed obligation raised as an alert that
names the values breaking it (once, until that obligation holds again). The operator's
accept/reject labels train V's weights (:func:`causalscope.models.scoring.learn.learn_weights`)
once enough exist; the weights are stored (``score_weights``) and used from then on, also
after a restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from causalscope.actors.scoring import ScoredSubject, SessionScorer
from causalscope.daemon.alerts import Alert
from causalscope.models.errors import CausalscopeError
from causalscope.models.scoring import ScoreComponents, ScoreWeights

if TYPE_CHECKING:
    from causalscope.actors._evaluation_results import EvaluationUpdate
    from causalscope.config import ScoringSettings
    from causalscope.daemon.store import SessionStore
    from causalscope.models.records import ExposureRecord
    from causalscope.models.scoring.learn import LearnedWeights

__all__ = ["ScoreKeeper"]

# what to do about each failed obligation, for the operator
_ADVICE = {
    "fit_within_nyquist": "The CTF fit's resolution is impossible at this pixel size: check "
    "the pixel size in the metadata and the CTF search range.",
    "particles_fit_in_ice": "The particles cannot fit in ice this thin: they may be ice "
    "contamination or the ice estimate is off; look at the micrograph.",
    "picks_do_not_overlap": "Picks overlap: the picker's minimum distance or particle "
    "diameter is set too small.",
    "packing_allows_density": "More particles were picked than fit on the micrograph: the "
    "picker is picking noise or aggregates; raise its threshold.",
    "dose_matches_metadata": "The dose in the metadata disagrees with the counts: check the "
    "detector's gain reference and the dose rate; dose weighting uses the wrong dose.",
    "drift_within_stage": "The specimen moved faster than the stage allows: a loose grid, "
    "charging, or a bad motion fit.",
    "map_within_nyquist": "The map's resolution is beyond its pixel size: the half-maps are "
    "not independent.",
    "map_not_beyond_classes": "The map claims far more than the 2D classes show: suspect "
    "overfitting or correlated half-sets.",
    "symmetry_consistent": "The reference map does not have the symmetry set (or its axes "
    "are not in the standard orientation): check processing.reconstruction.symmetry.",
}


class ScoreKeeper:
    """Scores a session's commits into its store; alerts go to ``raise_alert``."""

    def __init__(
        self,
        settings: ScoringSettings,
        store: SessionStore,
        raise_alert: Callable[[Alert], None],
    ) -> None:
        self.scorer = SessionScorer(settings)
        self._store = store
        self._raise_alert = raise_alert
        self._settings = settings
        self._failing: set[str] = set()  # obligations alerted on and not held since
        self.scorer.replay(store.score_history())
        self._learned_from = 0
        latest = store.latest_weights()
        if latest is not None:
            _, weights, self._learned_from = latest
            self.scorer.weights = ScoreWeights(**weights)
        for record in store.unscored_records():  # committed, then killed before its score
            self.exposure(record)

    def exposure(self, record: ExposureRecord) -> ScoredSubject | None:
        """Score a committed exposure (None when storing failed: reported, never raised)."""
        return self._keep(self.scorer.score_exposure(record), record.exposure_id)

    def reconstruction(self, update: EvaluationUpdate) -> ScoredSubject | None:
        """Score a stored reconstruction update that carries a map."""
        scored = self.scorer.score_reconstruction(update)
        return None if scored is None else self._keep(scored, None)

    def labelled(self) -> LearnedWeights | None:
        """After an operator's label: learn the weights again when enough new labels exist
        (None when not yet, or when the labels hold only one verdict)."""
        from causalscope.models.scoring.learn import learn_weights

        labelled = self._store.labelled_components()
        accepted = [verdict for _, verdict in labelled]
        s = self._settings
        enough = len(labelled) >= s.learn_min_labels and 0 < sum(accepted) < len(accepted)
        if not enough or len(labelled) < self._learned_from + s.learn_every:
            return None
        components = [ScoreComponents(**values) for values, _ in labelled]
        learned = learn_weights(
            components, accepted, start=self.scorer.weights, n_trials=s.learn_trials
        )
        weights = dataclasses.asdict(learned.weights)
        try:
            version = self._store.commit_weights(
                n_labels=len(labelled),
                accepted=sum(accepted),
                weights=weights,
                auc=learned.auc,
                start_auc=learned.start_auc,
                convergence=list(learned.convergence),
            )
            self._store.log_event(
                "scores",
                f"score weights v{version} learned from {len(labelled)} labels: AUC "
                f"{learned.start_auc:.3f} -> {learned.auc:.3f}",
                weights=weights,
            )
        except CausalscopeError as error:
            self._raise_alert(
                Alert(
                    code="score_weights_not_stored",
                    severity="warn",
                    message=f"{error.title}: {error.message}",
                    advice="The weights are learned again at the next label.",
                )
            )
            return None
        self.scorer.weights = learned.weights
        self._learned_from = len(labelled)
        return learned

    def _keep(self, scored: ScoredSubject, exposure_id: str | None) -> ScoredSubject | None:
        try:
            self._store.commit_score(scored)
        except CausalscopeError as error:
            self._raise_alert(
                Alert(
                    code="score_not_stored",
                    severity="warn",
                    message=f"{error.title}: {error.message}",
                    advice="The score is computed again when this exposure is committed again.",
                    exposure_id=exposure_id,
                )
            )
            return None
        held = {o.name for o in scored.obligations if o.holds}
        self._failing -= held
        for failed in scored.failed:
            if failed.name in self._failing:
                continue  # one alert per obligation until it holds again: no flood
            self._failing.add(failed.name)
            self._raise_alert(
                Alert(
                    code=f"obligation_{failed.name}",
                    severity="warn",
                    message=f"{failed.subject}: {failed.message}",
                    advice=_ADVICE.get(failed.name, "Check the measurement it names."),
                    exposure_id=exposure_id,
                )
            )
        return scored
