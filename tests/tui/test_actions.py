"""Pilot tests of every key: each action reaches the source, and the screen shows its result."""

from __future__ import annotations

import asyncio

from causalscope.config import TuiSettings
from causalscope.tui import make_app
from causalscope.tui.app import Dashboard
from causalscope.tui.format import gate
from causalscope.tui.source import RecordedSource, Snapshot
from causalscope.tui.widgets import HelpScreen, ThresholdDialog
from tests.tui._pilot import press, settle
from tests.tui._session import ActionLog, exposure_id, recorded_source


def _app(snapshot: Snapshot, log: ActionLog | None) -> Dashboard:
    return make_app(TuiSettings(), recorded_source(snapshot, log))


def test_accept_and_reject_label_the_selected_exposure(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        log = ActionLog()
        app = _app(snapshot_session, log)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "up")  # from the newest (seen) exposure to the one before it
            target = exposure_id(23)
            assert app.table.selected_id() == target
            await press(pilot, "a")
            assert log.calls[-1] == ("label", {"exposure_id": target, "label": "accept"})
            assert app.state.labels[target] == "accept"
            assert str(app.table.get_cell(target, "label")) == "✓ acc"
            await press(pilot, "r")
            assert log.calls[-1] == ("label", {"exposure_id": target, "label": "reject"})
            assert str(app.table.get_cell(target, "label")) == "✗ rej"

    asyncio.run(scenario())


def test_pause_then_resume(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        log = ActionLog()
        app = _app(snapshot_session, log)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "p")
            assert log.calls[-1] == ("pause", {})
            await pilot.pause(0.3)  # the overview redraws at refresh_hz
            assert "PAUSED" in str(app.query_one("#overview").render())
            await press(pilot, "p")
            assert log.calls[-1] == ("resume", {})
            await pilot.pause(0.3)
            assert "PAUSED" not in str(app.query_one("#overview").render())

    asyncio.run(scenario())


def test_threshold_dialog_sets_the_chosen_threshold(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        log = ActionLog()
        app = _app(snapshot_session, log)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "t")
            assert isinstance(app.screen, ThresholdDialog)
            await press(pilot, "down", "enter")  # the second: total drift
            await press(pilot, "ctrl+u", "2", "5", "enter")
            assert not isinstance(app.screen, ThresholdDialog)
            assert log.calls[-1] == ("set_threshold", {"name": "total_drift_px", "value": 25.0})
            assert app.state.thresholds["total_drift_px"] == 25.0

    asyncio.run(scenario())


def test_threshold_dialog_refuses_a_bad_value_and_cancels(
    snapshot_session: Snapshot,
) -> None:
    async def scenario() -> None:
        log = ActionLog()
        app = _app(snapshot_session, log)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "t", "enter", "ctrl+u", "-", "3", "enter")
            assert isinstance(app.screen, ThresholdDialog)  # -3 is refused, the dialog stays
            await press(pilot, "escape")
            assert not isinstance(app.screen, ThresholdDialog)
            assert log.calls == []

    asyncio.run(scenario())


def test_filter_by_status_and_text_then_clear(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        app = _app(snapshot_session, ActionLog())
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "slash", *"fail", "enter")
            shown = [str(k.value) for k in app.table.rows]
            assert shown == [exposure_id(12), exposure_id(22), exposure_id(23)]
            assert all(gate(app.state.rows[e]) == "fail" for e in shown)
            await press(pilot, "slash", "ctrl+u", *"drift_early", "enter")
            assert [str(k.value) for k in app.table.rows] == [exposure_id(6), exposure_id(19)]
            await press(pilot, "escape")
            assert app.table.row_count == len(snapshot_session.rows)

    asyncio.run(scenario())


def test_sort_cycles_worst_first(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        app = _app(snapshot_session, ActionLog())
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "s")
            assert app.table.sort_name == "gate"
            first = str(next(iter(app.table.rows)).value)
            assert gate(app.state.rows[first]) == "fail"
            await press(pilot, "s")
            assert app.table.sort_name == "resolution"
            first = str(next(iter(app.table.rows)).value)
            assert first == exposure_id(23)  # the worst fit: 8.5 A

    asyncio.run(scenario())


def test_help_opens_and_closes(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        app = _app(snapshot_session, ActionLog())
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "question_mark")
            assert isinstance(app.screen, HelpScreen)
            await press(pilot, "a")  # dashboard keys do nothing under a dialog
            assert app.state.labels.get(exposure_id(24)) is None
            await press(pilot, "escape")
            assert not isinstance(app.screen, HelpScreen)

    asyncio.run(scenario())


def test_quit_stops_following(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        app = _app(snapshot_session, ActionLog())
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("q")
            await pilot.pause()
        assert not app.is_running
        assert app._stop.is_set()

    asyncio.run(scenario())


def test_actions_on_a_finished_session_say_it_is_not_running(
    snapshot_session: Snapshot,
) -> None:
    async def scenario() -> None:
        source = RecordedSource(snapshot_session, name="finished")
        app = make_app(TuiSettings(), source)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "r")
            messages = [n.message for n in app._notifications]
            assert any("the session is not running" in m for m in messages)
            assert app.state.labels == snapshot_session.labels

    asyncio.run(scenario())
