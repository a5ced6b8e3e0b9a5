"""Snapshots of the dashboard's screens at 80 x 24 and 160 x 48, from a recorded session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from causalscope.config import TuiSettings
from causalscope.tui import make_app
from causalscope.tui.source import Snapshot
from tests.tui._pilot import press, settle
from tests.tui._session import (
    ALERTS,
    ActionLog,
    exposure_id,
    live_causal_update,
    recorded_source,
)

SIZES = [(80, 24), (160, 48)]


def _keys(*keys: str) -> Callable[[Pilot[None]], Any]:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        if keys:
            await press(pilot, *keys)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "160x48"])
@pytest.mark.parametrize(
    "keys",
    [
        pytest.param((), id="main"),
        pytest.param(("slash", "f", "a", "i", "l", "enter"), id="filter_fail"),
        pytest.param(("up", "up"), id="details_flagged"),
        pytest.param(("question_mark",), id="help"),
        pytest.param(("g",), id="graphs_toggled"),
        # small: the causes instead of the table; tall: the panel hidden
        pytest.param(("c",), id="causes_toggled"),
        # the running reconstructions: the gallery, the verdict, the FSC and the forecast
        pytest.param(("m",), id="reconstructions"),
        # a row down and one right (class 7 at 80 columns), rejected: red, faded, ✗
        pytest.param(("m", "down", "right", "r"), id="class_rejected"),
    ],
)
def test_screens(
    snap_compare: Any, snapshot_session: Snapshot, size: tuple[int, int], keys: tuple[str, ...]
) -> None:
    app = make_app(TuiSettings(), recorded_source(snapshot_session, ActionLog()))
    assert snap_compare(app, terminal_size=size, run_before=_keys(*keys))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "160x48"])
def test_alert_arriving(
    snap_compare: Any, snapshot_session: Snapshot, size: tuple[int, int]
) -> None:
    """A live alert: in the panel (newest first) and as a notification with its advice."""
    alert = {
        "id": 3,
        "logged_at": "2024-05-01T09:25:00",
        "kind": "alert",
        "message": "Drift above 30 px on 2 of the last 10",
        "data": {
            "code": "drift_trend",
            "severity": "fail",
            "advice": "Wait for the stage to settle; raise the pre-exposure delay.",
            "exposure_id": exposure_id(23),
        },
    }
    source = recorded_source(snapshot_session, ActionLog())
    source._messages = [("event", alert)]
    assert len(ALERTS) == 2
    app = make_app(TuiSettings(), source)
    assert snap_compare(app, terminal_size=size, run_before=_keys())


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "160x48"])
def test_causal_regime_change_arriving(
    snap_compare: Any, snapshot_session: Snapshot, size: tuple[int, int]
) -> None:
    """A live causal update declaring a regime change: the notice above the ranking (small:
    after `c`), the headline, and the new exposure's shares in its details."""
    update = {**live_causal_update(), "regime": 1, "regime_change": True}
    source = recorded_source(snapshot_session, ActionLog())
    source._messages = [("causal", update)]
    app = make_app(TuiSettings(), source)
    keys = ("c",) if size == (80, 24) else ()
    assert snap_compare(app, terminal_size=size, run_before=_keys(*keys))
