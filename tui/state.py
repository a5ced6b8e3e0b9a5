"""What the dashboard knows of its session, kept apart from how it is drawn.

:class:`SessionState` takes the history and the live messages and answers the questions the
widgets ask (the causes panel's state, which exposure's pictures to show); it draws nothing and
needs no running app, so its rules are tested on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from causalscope.config.alerts import THRESHOLD_NAMES
from causalscope.daemon.client import Snapshot
from causalscope.tui.causes import CausesState
from causalscope.tui.reconstruction import ReconstructionState
from causalscope.tui.widgets.image import KINDS

__all__ = ["SessionState", "has_pictures"]


def has_pictures(row: Mapping[str, Any]) -> bool:
    """Whether an exposure row names any picture the images panel draws."""
    outputs = row.get("outputs")
    return isinstance(outputs, Mapping) and any(k in outputs for k in KINDS.values())


@dataclass
class SessionState:
    """The session as the dashboard last heard of it.

    Attributes
    ----------
    thresholds
        The alert thresholds drawn on the plots (the session's status overrides them).
    connection
        ``"connecting"``, ``"ok"`` or ``"lost"``.
    rows
        Exposure rows by id, in the order seen.
    labels
        The operator's latest label per exposure id.
    alerts
        Alert events, oldest first.
    status
        The session's latest status, or None before the first.
    quarantine
        The quarantine reason per exposure id.
    causes
        The causal model's latest ranking; None while the session has no model.
    causal
        The model's verdict per exposure id.
    evaluations
        The running reconstructions' updates by version (the history's lack the class lists
        and the FSC curves).
    class_set
        The latest class set with its classes and its update's ``version``, or None.
    reconstruction
        The latest map with its FSC curves and its update's ``version``, or None.
    class_labels
        The operator's latest label per class index.
    scores
        Each scored exposure's score with its obligations, by id.
    """

    thresholds: dict[str, float]
    connection: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] | None = None
    quarantine: dict[str, str] = field(default_factory=dict)
    causes: list[dict[str, Any]] | None = None
    causal: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[int, dict[str, Any]] = field(default_factory=dict)
    class_set: dict[str, Any] | None = None
    reconstruction: dict[str, Any] | None = None
    class_labels: dict[int, str] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    _causal_latest: dict[str, Any] | None = None
    _regime_changed_at: str | None = None

    def load(self, snapshot: Snapshot) -> None:
        """Replace everything with a (re-)read history."""
        self.rows = {str(r["exposure_id"]): r for r in snapshot.rows}
        self.labels = dict(snapshot.labels)
        self.alerts = list(snapshot.alerts)
        self.quarantine = {
            str(q["exposure_id"]): str(q.get("reason", ""))
            for q in snapshot.quarantine
            if q.get("exposure_id")
        }
        if snapshot.status is not None:
            self.take_status(snapshot.status)
        self.causes = None if snapshot.causes is None else list(snapshot.causes)
        self.causal, self._causal_latest, self._regime_changed_at = {}, None, None
        for verdict in snapshot.causal:
            self.take_causal(verdict)
        self.evaluations = {int(u["version"]): u for u in snapshot.evaluations}
        self.class_set = snapshot.class_set
        self.reconstruction = snapshot.reconstruction
        self.class_labels = dict(snapshot.class_labels)
        self.scores = dict(snapshot.scores)
        if self.connection == "connecting":
            self.connection = "ok"

    def take_status(self, status: dict[str, Any]) -> bool:
        """Keep the session's status; True when it changed a threshold."""
        self.status = status
        changed = False
        thresholds = status.get("thresholds")
        if isinstance(thresholds, Mapping):
            for name in THRESHOLD_NAMES:
                if isinstance(thresholds.get(name), int | float):
                    changed |= self.thresholds.get(name) != thresholds[name]
                    self.thresholds[name] = float(thresholds[name])
        return changed

    def take_causal_update(self, update: Mapping[str, Any]) -> None:
        """Keep a live causal update: its verdict, and its ranking when it is the latest."""
        verdict = dict(update)
        ranking = verdict.pop("ranking", None)
        if self.take_causal(verdict) and isinstance(ranking, list):
            self.causes = ranking
        elif self.causes is None:
            self.causes = []  # the session has a model after all; its ranking comes next

    def take_causal(self, verdict: dict[str, Any]) -> bool:
        """Keep an exposure's verdict; True when it is the model's latest."""
        eid = str(verdict.get("exposure_id"))
        self.causal[eid] = verdict
        if verdict.get("regime_change"):
            self._regime_changed_at = eid
        index = verdict.get("index")
        latest = self._causal_latest
        if not isinstance(index, int) or (
            latest is not None and index < int(latest.get("index") or 0)
        ):
            return False
        self._causal_latest = verdict
        return True

    def causes_state(self) -> CausesState:
        """What the causes panel and the overview's headline show."""
        latest = self._causal_latest or {}
        index = latest.get("index")
        return CausesState(
            ranking=self.causes,
            exposures=int(index) if isinstance(index, int) else None,
            converged=bool(latest.get("converged")),
            regime=int(latest.get("regime") or 0),
            regime_changed_at=self._regime_changed_at,
        )

    def take_evaluation(self, update: Mapping[str, Any]) -> bool:
        """Keep a published update of the running reconstructions; True when it brought a
        newer class set (whose pictures are to be fetched)."""
        version = update.get("version")
        if not isinstance(version, int):
            return False
        self.evaluations[version] = dict(update)
        self.evaluations = dict(sorted(self.evaluations.items()))
        volume = update.get("map")
        if isinstance(volume, Mapping) and version >= int(
            (self.reconstruction or {}).get("version", -1)
        ):
            self.reconstruction = {"version": version, **volume}
        classes = update.get("class_set")
        if isinstance(classes, Mapping) and version > int(
            (self.class_set or {}).get("version", -1)
        ):
            self.class_set = {"version": version, **classes}
            return True
        return False

    def take_score(self, score: Mapping[str, Any]) -> str | None:
        """Keep an exposure's score; its id (None for another kind of subject)."""
        if score.get("kind") != "exposure" or not score.get("subject"):
            return None
        exposure_id = str(score["subject"])
        self.scores[exposure_id] = dict(score)
        return exposure_id

    def take_class_label(self, class_index: int, label: str) -> None:
        """Keep the operator's label of a class."""
        if label in ("select", "reject"):
            self.class_labels[int(class_index)] = label

    def reconstruction_state(self) -> ReconstructionState:
        """What the reconstructions panel and the overview's headline show."""
        status = (self.status or {}).get("reconstruction")
        return ReconstructionState(
            updates=list(self.evaluations.values()),
            class_set=self.class_set,
            reconstruction=self.reconstruction,
            class_labels=self.class_labels,
            status=status if isinstance(status, Mapping) else None,
        )

    def take_quarantine(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        """Keep a quarantine row; the exposure's row to redraw as quarantined, if any."""
        eid = row.get("exposure_id")
        if not eid:
            return None
        self.quarantine[str(eid)] = str(row.get("reason", ""))
        seen = self.rows.get(str(eid))
        if seen is not None and seen.get("state") == "seen":
            return {**seen, "state": "quarantined"}
        return None

    def picture_row(self, selected: str | None) -> dict[str, Any] | None:
        """The selected exposure if it has pictures, else the latest one that has."""
        row = None if selected is None else self.rows.get(selected)
        if row is not None and has_pictures(row):
            return row
        for row in reversed(self.rows.values()):
            if has_pictures(row):
                return row
        return None
