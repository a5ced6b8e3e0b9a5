"""The causes of lost resolution: read from a session file, drawn as ranked error bars, updated
by live ``causal`` messages, and each exposure's shares in its details."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rich.text import Text

from causalscope.config import TuiSettings
from causalscope.daemon.store import SessionStore
from causalscope.models.causal import SessionCausalModel
from causalscope.tui import make_app
from causalscope.tui.app import Dashboard
from causalscope.tui.causes import (
    CausesState,
    _bar,
    causes_body,
    causes_headline,
    exposure_causes_text,
)
from causalscope.tui.messages import CausalUpdated, message_for
from causalscope.tui.source import RecordedSource, Snapshot
from causalscope.tui.widgets import CausesPanel
from tests.daemon.store._records import make_record
from tests.tui._pilot import press, settle, shown_text
from tests.tui._session import (
    N_EXPOSURES,
    ActionLog,
    causal_inputs,
    exposure_id,
    live_causal_update,
    recorded_source,
)

_TITLE = "Causes of lost resolution"


def _number(row: dict[str, Any]) -> str:
    """A cause's cost as the panel prints it."""
    return f"{row['mean_angstrom']:.2f} ± {row['sd_angstrom']:.2f} Å"


def _panel(app: Dashboard) -> str:
    return shown_text(app.query_one("#causes-text"))


def _app(source: RecordedSource) -> Dashboard:
    return make_app(TuiSettings(), source)


# -- the source ---------------------------------------------------------------------------------


def test_recorded_file_gives_the_models_verdicts_and_latest_ranking(
    snapshot_session: Snapshot,
) -> None:
    """Round trip: what the daemon's model said (replayed here) is what the dashboard reads."""
    model = SessionCausalModel(ranking_every=1)
    updates = [model.observe(exposure_id(i), causal_inputs(i)) for i in range(N_EXPOSURES)]
    assert snapshot_session.causes is not None
    assert [r["cause"] for r in snapshot_session.causes] == [r.cause for r in updates[-1].ranking]
    assert snapshot_session.causes[0]["cause"] == "ice_thickness"  # thick ice dominates
    for read, expected in zip(snapshot_session.causes, updates[-1].ranking, strict=True):
        assert read["rank"] == expected.rank
        assert read["mean_angstrom"] == pytest.approx(expected.mean_angstrom)
        assert read["sd_angstrom"] == pytest.approx(expected.sd_angstrom)
        assert read["p_top"] == pytest.approx(expected.p_top)
        assert (read["observed"], read["converged"]) == (expected.observed, expected.converged)
        assert read["advice"] == expected.advice
    assert [v["exposure_id"] for v in snapshot_session.causal] == [u.exposure_id for u in updates]
    for read, update in zip(snapshot_session.causal, updates, strict=True):
        published = update.to_dict()
        published.pop("ranking")
        shares = {s["cause"]: s for s in published.pop("shares")}
        read = dict(read)
        assert {s["cause"]: pytest.approx(s) for s in read.pop("shares")} == shares
        assert read == pytest.approx(published)


def _old_session_file(path: Path) -> None:
    """A session file written before the causal model: none of its tables."""
    with SessionStore(path) as store:
        store.commit_exposure(make_record("a"), params_hash="h")
    con = duckdb.connect(str(path))
    for table in ("causal_ranking", "causal_shares", "causal", "causal_inputs"):
        con.execute(f"DROP TABLE {table}")
    con.close()


def test_a_file_without_the_causal_tables_has_no_causal_model(tmp_path: Path) -> None:
    _old_session_file(tmp_path / "old.duckdb")
    snapshot = RecordedSource.open(tmp_path / "old.duckdb").history()
    assert [r["exposure_id"] for r in snapshot.rows] == ["a"]
    assert snapshot.causes is None and snapshot.causal == []


def test_a_session_not_yet_learned_from_has_an_empty_ranking(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "new.duckdb") as store:
        store.commit_exposure(make_record("a"), params_hash="h")
    snapshot = RecordedSource.open(tmp_path / "new.duckdb").history()
    assert snapshot.causes == [] and snapshot.causal == []


def test_causal_topic_becomes_a_message() -> None:
    update = live_causal_update()
    message = message_for("causal", update)
    assert isinstance(message, CausalUpdated) and message.update == update
    assert message_for("causal", {"ranking": []}) is None  # no exposure: malformed


# -- drawing ------------------------------------------------------------------------------------


def test_error_bar_places_mean_and_sd_on_the_scale() -> None:
    # 10 cells for 1 A: mean 0.55 in cell 5, mean - sd 0.45 in cell 4, mean + sd 0.65 in cell 6
    assert _bar(0.55, 0.1, 1.0, 10) == "████├●┤   "
    assert _bar(0.55, 0.0, 1.0, 10) == "█████●    "
    assert _bar(0.0, 0.0, 1.0, 10) == "●         "
    assert _bar(1.0, 0.5, 1.0, 10) == "█████├───●"  # the last cell holds the mean
    assert _bar(-0.2, 0.1, 1.0, 4) == "●   "  # negative shares sit at zero


def test_body_ranks_observed_causes_and_lists_the_rest(snapshot_session: Snapshot) -> None:
    causes = snapshot_session.causes
    assert causes is not None
    state = CausesState(ranking=causes, exposures=N_EXPOSURES, converged=False)
    lines = causes_body(state, 76).plain.splitlines()
    observed = [r for r in causes if r["observed"]]
    assert len(lines) == 1 + len(observed) + 1 + 1  # axis, causes, not observed, advice
    assert lines[1].startswith(" 1 ice thickness ")
    for line, row in zip(lines[1:], observed, strict=False):
        assert _number(row) in line
        assert line.endswith(" ?") != bool(row["converged"])
        assert len(line) <= 76
    assert "not observed (did not vary): dose, astigmatism, beam tilt" in lines[1 + len(observed)]
    assert lines[-1].startswith("→ Ice too thick")


def test_headline_names_the_top_cause_and_the_key() -> None:
    top = {
        "cause": "beam_tilt",
        "rank": 1,
        "mean_angstrom": 0.62,
        "sd_angstrom": 0.05,
        "p_top": 0.91,
        "observed": True,
        "converged": True,
        "advice": "Redo coma-free.",
    }
    state = CausesState(ranking=[top], exposures=120, converged=True)
    line = causes_headline(state, hint=True)
    assert isinstance(line, Text)
    assert line.plain == "top cause beam tilt 0.62 ± 0.05 Å P(top) 0.91 · converged  c: all causes"
    changed = CausesState(ranking=[top], exposures=120, converged=True, regime=1)
    assert "⚠ regime change" in str(causes_headline(changed, hint=False))
    assert causes_headline(CausesState(ranking=None), hint=True) is None
    assert causes_headline(CausesState(ranking=[{**top, "observed": False}]), hint=True) is None


def test_exposure_shares_biggest_first_then_the_unexplained() -> None:
    verdict = {
        "exposure_id": "x",
        "observed_resolution_angstrom": 5.0,
        "best_resolution_angstrom": 3.8,
        "unexplained_angstrom": 0.1,
        "dominant_cause": "ice_thickness",
        "shares": [
            {"cause": "drift", "share_angstrom": 0.2, "sd_angstrom": 0.05},
            {"cause": "dose", "share_angstrom": 0.0, "sd_angstrom": 0.0},
            {"cause": "ice_thickness", "share_angstrom": 0.9, "sd_angstrom": 0.1},
        ],
    }
    text = exposure_causes_text(verdict)
    assert text is not None
    assert [line.split() for line in text.plain.splitlines()] == [
        ["cause", "ice", "thickness", "·", "lost", "1.20", "Å"],
        ["ice", "thickness", "0.90", "±", "0.10", "Å"],
        ["drift", "0.20", "±", "0.05", "Å"],
        ["unexplained", "0.10", "Å"],
        ["fit", "5.00", "Å,", "the", "session's", "best", "3.80", "Å"],
    ]
    assert exposure_causes_text(None) is None


# -- the dashboard ------------------------------------------------------------------------------


def test_panel_shows_the_recorded_ranking_at_both_sizes(snapshot_session: Snapshot) -> None:
    causes = snapshot_session.causes
    assert causes is not None
    top = causes[0]

    async def scenario() -> None:
        app = _app(recorded_source(snapshot_session, ActionLog()))
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            panel = app.query_one("#causes", CausesPanel)
            assert app._causes_visible() and panel.region.height > 0
            assert panel.border_title == f"{_TITLE} · {N_EXPOSURES} exposures · learning"
            text = _panel(app)
            assert " 1 ice thickness " in text and _number(top) in text
            assert f"{top['p_top']:.2f}" in text
            assert "Ice too thick" in text
            overview = str(app.query_one("#overview").render())
            assert f"top cause ice thickness {_number(top)}" in overview
            assert "c: all causes" not in overview  # the panel is on screen
            await press(pilot, "c")  # tall: hides the panel, the table takes its room
            assert not app._causes_visible()
            assert "c: all causes" in str(app.query_one("#overview").render())
        app = _app(recorded_source(snapshot_session, ActionLog()))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert not app._causes_visible()  # small: the table, details and alerts
            assert "c: all causes" in str(app.query_one("#overview").render())
            await press(pilot, "c")
            assert app._causes_visible() and not app.table.display
            assert app.query_one("#details").region.height > 0  # still usable
            text = _panel(app)
            assert " 1 ice thickness " in text and _number(top) in text
            await press(pilot, "c")  # back to the table
            assert not app._causes_visible() and app.table.display
            await press(pilot, "g", "c")  # from the graphs straight to the causes
            assert app._causes_visible()

    asyncio.run(scenario())


def test_live_causal_message_updates_the_panel_and_details(snapshot_session: Snapshot) -> None:
    update = live_causal_update()
    eid = exposure_id(N_EXPOSURES)
    assert update["exposure_id"] == eid and update["dominant_cause"] == "drift"
    drift = next(r for r in update["ranking"] if r["cause"] == "drift")
    before = next(r for r in snapshot_session.causes or [] if r["cause"] == "drift")
    assert _number(drift) != _number(before)  # the new exposure moved drift's cost

    async def scenario() -> None:
        source = recorded_source(snapshot_session, ActionLog())
        source._messages = [("causal", update)]
        app = _app(source)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            await pilot.pause(0.3)  # redraws come at refresh_hz
            panel = app.query_one("#causes", CausesPanel)
            assert panel.border_title == f"{_TITLE} · {N_EXPOSURES + 1} exposures · learning"
            assert _number(drift) in _panel(app) and _number(before) not in _panel(app)
            assert app.table.selected_id() == eid  # the newest, selected: its verdict shows
            details = shown_text(app.query_one("#details-text"))
            assert "cause drift" in details
            for share in update["shares"]:
                if abs(share["share_angstrom"]) >= 0.005:
                    assert (
                        f"{share['share_angstrom']:5.2f} ± {share['sd_angstrom']:.2f} Å" in details
                    )
            assert f"{'unexplained':<16}{update['unexplained_angstrom']:5.2f} Å" in details

    asyncio.run(scenario())


def test_regime_change_is_announced(snapshot_session: Snapshot) -> None:
    update = {**live_causal_update(), "regime": 1, "regime_change": True}

    async def scenario() -> None:
        source = recorded_source(snapshot_session, ActionLog())
        source._messages = [("causal", update)]
        app = _app(source)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            await pilot.pause(0.3)
            assert (
                "⚠ Regime change at FoilHole_3001_Data_0025: ranked from the exposures since"
                in _panel(app)
            )
            assert "⚠ regime change" in str(app.query_one("#overview").render())

    asyncio.run(scenario())


def test_an_older_verdict_does_not_replace_the_latest_ranking(snapshot_session: Snapshot) -> None:
    """A catch-up can deliver an older exposure's verdict after a newer one."""
    newest = live_causal_update()
    older = copy.deepcopy(newest)
    older.update(exposure_id=exposure_id(3), index=4)
    older["ranking"] = [{**r, "mean_angstrom": 9.0} for r in older["ranking"]]

    async def scenario() -> None:
        source = recorded_source(snapshot_session, ActionLog())
        source._messages = [("causal", newest), ("causal", older)]
        app = _app(source)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            await pilot.pause(0.3)
            assert app.state.causes == newest["ranking"]
            assert app.state.causal[exposure_id(3)]["index"] == 4  # its own verdict is kept

    asyncio.run(scenario())


def test_details_show_the_selected_exposures_shares(snapshot_session: Snapshot) -> None:
    target = exposure_id(22)  # thick ice: 150 nm
    verdict = next(v for v in snapshot_session.causal if v["exposure_id"] == target)
    ice = next(s for s in verdict["shares"] if s["cause"] == "ice_thickness")

    async def scenario() -> None:
        app = _app(recorded_source(snapshot_session, ActionLog()))
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            await press(pilot, "up", "up")
            assert app.table.selected_id() == target
            details = shown_text(app.query_one("#details-text"))
            assert verdict["dominant_cause"] == "ice_thickness"
            assert "cause ice thickness" in details
            share = f"{ice['share_angstrom']:5.2f} ± {ice['sd_angstrom']:.2f} Å"
            assert f"{'ice thickness':<16}{share}" in details
            assert "unexplained" in details

    asyncio.run(scenario())


def test_a_session_without_a_causal_model_says_so(tmp_path: Path) -> None:
    _old_session_file(tmp_path / "old.duckdb")

    async def scenario() -> None:
        app = _app(RecordedSource.open(tmp_path / "old.duckdb"))
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            assert app.state.causes is None
            assert app.query_one("#causes", CausesPanel).border_title == _TITLE
            assert "no causal model" in _panel(app)
            assert "top cause" not in str(app.query_one("#overview").render())
            await press(pilot, "up")
            assert "cause" not in shown_text(app.query_one("#details-text"))

    asyncio.run(scenario())
