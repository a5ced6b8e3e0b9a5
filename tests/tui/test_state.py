"""The dashboard's session state on its own: the rules it keeps without a running app."""

from __future__ import annotations

from typing import Any

from causalscope.config import AlertSettings
from causalscope.tui.source import Snapshot
from causalscope.tui.state import SessionState


def _state(connection: str = "connecting") -> SessionState:
    return SessionState(thresholds=AlertSettings().thresholds(), connection=connection)


def _verdict(eid: str, index: int, **extra: Any) -> dict[str, Any]:
    return {"exposure_id": eid, "index": index, **extra}


def test_a_late_verdict_is_kept_but_does_not_replace_the_newest_ranking() -> None:
    state = _state()
    state.take_causal_update({**_verdict("e5", 5), "ranking": [{"cause": "drift"}]})
    state.take_causal_update({**_verdict("e3", 3), "ranking": [{"cause": "ice_thickness"}]})
    assert state.causes == [{"cause": "drift"}]
    assert state.causal["e3"]["index"] == 3
    assert "ranking" not in state.causal["e5"]
    assert state.causes_state().exposures == 5


def test_a_verdict_without_a_ranking_says_the_session_has_a_model() -> None:
    state = _state()
    assert state.causes is None and state.causes_state().ranking is None
    state.take_causal_update(_verdict("e0", 0))
    assert state.causes == []


def test_the_regime_change_is_remembered_where_it_was_declared() -> None:
    state = _state()
    state.take_causal(_verdict("e1", 1, regime=0))
    state.take_causal(_verdict("e2", 2, regime=1, regime_change=True, converged=True))
    state.take_causal(_verdict("e3", 3, regime=1))
    causes = state.causes_state()
    assert (causes.regime, causes.regime_changed_at, causes.converged) == (1, "e2", False)


def test_status_thresholds_override_the_settings_and_say_when_they_changed() -> None:
    state = _state()
    drift = AlertSettings().thresholds()["total_drift_px"]
    assert state.take_status({"thresholds": {"total_drift_px": drift}}) is False
    assert state.take_status({"thresholds": {"total_drift_px": drift + 5, "bogus": 1.0}}) is True
    assert state.thresholds["total_drift_px"] == drift + 5
    assert "bogus" not in state.thresholds
    assert state.take_status({"thresholds": {"total_drift_px": "high"}}) is False  # not a number


def test_a_quarantined_movie_that_was_only_seen_is_redrawn_as_quarantined() -> None:
    state = _state()
    state.rows = {
        "e1": {"exposure_id": "e1", "state": "seen"},
        "e2": {"exposure_id": "e2", "state": "done"},
    }
    assert state.take_quarantine({"exposure_id": "e1", "reason": "truncated"}) == {
        "exposure_id": "e1",
        "state": "quarantined",
    }
    assert state.take_quarantine({"exposure_id": "e2", "reason": "late"}) is None
    assert state.take_quarantine({"reason": "no id"}) is None
    assert state.quarantine == {"e1": "truncated", "e2": "late"}


def test_pictures_come_from_the_selection_or_else_the_latest_exposure_that_has_them() -> None:
    state = _state()
    pictured = {"thumbnail": "a.png"}
    state.rows = {
        "e1": {"exposure_id": "e1", "outputs": pictured},
        "e2": {"exposure_id": "e2", "outputs": {"power_spectrum_thumbnail": "b.png"}},
        "e3": {"exposure_id": "e3", "outputs": {"aligned_sum": "c.mrc"}},
    }
    assert state.picture_row("e1") is state.rows["e1"]
    assert state.picture_row("e3") is state.rows["e2"]  # e3 has none: the latest that has
    assert state.picture_row(None) is state.rows["e2"]
    state.rows = {"e3": state.rows["e3"]}
    assert state.picture_row("e3") is None


def test_loading_a_history_replaces_what_was_known_and_ends_connecting() -> None:
    state = _state()
    state.take_causal(_verdict("old", 9))
    state.load(
        Snapshot(
            rows=[{"exposure_id": "e1"}],
            labels={"e1": "reject"},
            quarantine=[{"exposure_id": "q", "reason": "corrupt"}, {"reason": "anonymous"}],
            causal=[_verdict("e1", 1, regime_change=True)],
        )
    )
    assert list(state.rows) == ["e1"] and state.labels == {"e1": "reject"}
    assert state.quarantine == {"q": "corrupt"}
    assert set(state.causal) == {"e1"} and state.causes is None
    assert state.causes_state().exposures == 1 and state.causes_state().regime_changed_at == "e1"
    assert state.connection == "ok"


def test_an_update_replaces_the_classes_and_map_only_when_newer() -> None:
    state = _state()
    classes = {"n_classes": 1, "classes": [{"class_index": 0, "label": None, "selected": True}]}
    volume = {"particles": 10, "resolution_angstrom": 8.0}
    assert state.take_evaluation({"version": 2, "class_set": classes, "map": volume})
    # an older one, handed over again (a catch-up): kept in the history, not shown
    assert not state.take_evaluation({"version": 1, "class_set": classes, "map": None})
    assert state.class_set is not None and state.class_set["version"] == 2
    assert state.reconstruction == {"version": 2, **volume}
    assert list(state.evaluations) == [1, 2]
    assert not state.take_evaluation({"version": 3, "class_set": None, "map": None})
    assert state.class_set["version"] == 2  # an update without classes keeps the last ones
    assert not state.take_evaluation({"class_set": classes})  # no version: malformed
    recon = state.reconstruction_state()
    assert recon.status is None and [u["version"] for u in recon.updates] == [1, 2, 3]
    row = recon.classes()[0]
    assert recon.selected(row) and not recon.pending(row)
    state.take_class_label(0, "reject")
    state.take_class_label(0, "maybe")  # not a class label: ignored
    recon = state.reconstruction_state()
    assert not recon.selected(row) and recon.pending(row) and recon.label(row) == "reject"


def test_the_overview_names_the_picker_in_use() -> None:
    from causalscope.tui.format import overview_text

    def line(picker: str | None) -> Any:
        status = {"workers": "2 actors", "devices": "cpu", "picker": picker}
        return overview_text(status, name="s", live=True, connection="ok", shown=1, total=1)

    tuned = line("fine-tuned, round 2 (2 labelled, F1 0.43 shipped -> 0.71)")
    assert "picker fine-tuned, round 2 (2 labelled, F1 0.43 shipped -> 0.71)" in tuned.plain
    start = tuned.plain.index("fine-tuned")
    assert any(s.style == "green" and s.start == start for s in tuned.spans)
    assert "picker shipped; round 1 not better" in line("shipped; round 1 not better").plain
    assert "picker" not in line(None).plain  # no labels folder: nothing to say
