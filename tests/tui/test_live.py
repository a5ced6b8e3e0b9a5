"""The dashboard on a running session: a reject reaches the database; the causal model's updates
reach the causes panel; losing the daemon and finding it again is shown."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from causalscope.config import TuiSettings
from causalscope.daemon.control import ControlServer, new_token
from causalscope.daemon.store import SessionStore, query_endpoint
from causalscope.models.causal import SessionCausalModel
from causalscope.models.records import CausalInputs
from causalscope.tui import LiveSource, make_app
from causalscope.tui.app import Dashboard
from tests.daemon.store._records import fail_flag, make_record
from tests.tui._pilot import press, settle, shown_text

_STATUS: dict[str, Any] = {
    "session": "live",
    "elapsed_s": 5.0,
    "seen": 3,
    "done": 3,
    "pass": 2,
    "warn": 0,
    "fail": 1,
    "quarantined": 0,
    "queue": 0,
    "in_flight": 0,
    "workers": "1 actor",
    "devices": "cpu",
    "paused": False,
    "acquisition_per_min": 2.0,
    "processing_per_min": 2.0,
    "keeping_up": True,
    "thresholds": {
        "ctf_fit_resolution_angstrom": 6.0,
        "total_drift_px": 30.0,
        "ice_thickness_nm": 80.0,
    },
}


def _store(path: Path) -> SessionStore:
    store = SessionStore(
        path, publish_address="tcp://127.0.0.1:0", query_address="tcp://127.0.0.1:0"
    )
    for i in range(3):
        flags = [fail_flag("ice_thick", 95.0, 80.0)] if i == 2 else []
        record = make_record(f"e{i}", status="fail" if flags else "pass", flags=flags)
        store.commit_exposure(record, params_hash="h")
    return store


def test_reject_reaches_the_database(tmp_path: Path) -> None:
    store = _store(tmp_path / "live.duckdb")
    token = new_token()

    def handle(body: dict[str, Any]) -> dict[str, Any]:
        # the session loop's side of the control protocol, on the store's (this) thread
        if body["action"] == "label":
            store.add_label(body["exposure_id"], body["label"])
            return {}
        if body["action"] == "status":
            return dict(_STATUS)
        raise ValueError(f"not in this test: {body['action']}")

    server = ControlServer("tcp://127.0.0.1:0", token=token, handler=handle)
    assert store.publish_endpoint is not None and store.query_endpoint is not None
    source = LiveSource(
        publish=store.publish_endpoint,
        query=store.query_endpoint,
        control=server.endpoint,
        token=token,
        name="live",
    )

    async def session_loop(stop: asyncio.Event) -> None:
        beat = 0.0
        while not stop.is_set():
            server.serve_pending()
            if time.monotonic() - beat > 0.5:
                store.publish(b"status", _STATUS)
                beat = time.monotonic()
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        stop = asyncio.Event()
        loop_task = asyncio.create_task(session_loop(stop))
        app = make_app(TuiSettings(), source)
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                assert app.table.row_count == 3
                assert app.table.selected_id() == "e2"
                await press(pilot, "r")
                labels = query_endpoint(
                    store.query_endpoint or "", "SELECT exposure_id, label FROM labels"
                ).rows
                assert labels == (("e2", "reject"),)
                await pilot.pause(0.3)
                assert app.state.labels["e2"] == "reject"
                assert str(app.table.get_cell("e2", "label")) == "✗ rej"
                await pilot.press("q")
        finally:
            stop.set()
            await loop_task

    try:
        asyncio.run(scenario())
    finally:
        server.close()
        store.close()


def _inputs(i: int) -> CausalInputs:
    """Exposure ``i``'s factors: ice thickens, and resolution with it."""
    ice = 30.0 + 10.0 * i
    return CausalInputs(
        ice_thickness_nm=ice,
        dose_e_per_a2=40.0,
        total_drift_px=3.0 + i % 2,
        defocus_um=1.2,
        astigmatism_angstrom=300.0,
        n_particles=200,
        fit_resolution_angstrom=round((12.0 + 0.3 * (ice - 30.0)) ** 0.5, 2),
    )


def test_causal_updates_reach_the_panel(tmp_path: Path) -> None:
    store = _store(tmp_path / "causal.duckdb")
    assert store.publish_endpoint is not None and store.query_endpoint is not None
    source = LiveSource(publish=store.publish_endpoint, query=store.query_endpoint, name="live")
    model = SessionCausalModel(ranking_every=1)

    async def session_loop(stop: asyncio.Event) -> None:
        while not stop.is_set():
            store.publish(b"status", _STATUS)
            await asyncio.sleep(0.1)

    async def until(condition: Any, what: str) -> None:
        for _ in range(250):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"never happened: {what}")

    async def scenario() -> None:
        stop = asyncio.Event()
        loop_task = asyncio.create_task(session_loop(stop))
        app = make_app(TuiSettings(), source)
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                await settle(pilot)
                assert app.state.causes == []  # the session has a model that has not learned yet
                assert "learning" in shown_text(app.query_one("#causes-text"))
                await until(lambda: app.state.status is not None, "subscribed (a status heartbeat)")
                for i in range(3):
                    store.commit_causal(model.observe(f"e{i}", _inputs(i)))
                await until(lambda: "e2" in app.state.causal, "the third update arrived")
                await pilot.pause(0.3)
                assert (
                    app.state.causes is not None and app.state.causes[0]["cause"] == "ice_thickness"
                )
                panel = app.query_one("#causes")
                assert panel.border_title is not None and "3 exposures" in panel.border_title
                top = app.state.causes[0]
                number = f"{top['mean_angstrom']:.2f} ± {top['sd_angstrom']:.2f} Å"
                assert number in shown_text(app.query_one("#causes-text"))
                assert app.table.selected_id() == "e2"
                assert "cause ice thickness" in shown_text(app.query_one("#details-text"))
                await pilot.press("q")
        finally:
            stop.set()
            await loop_task

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_catch_up_posts_the_causal_verdicts_committed_meanwhile(tmp_path: Path) -> None:
    store = _store(tmp_path / "catch_up.duckdb")
    assert store.publish_endpoint is not None and store.query_endpoint is not None
    source = LiveSource(publish=store.publish_endpoint, query=store.query_endpoint)
    model = SessionCausalModel()
    try:
        source.history()
        # committed after the history was read, before the subscription
        store.commit_exposure(make_record("e3"), params_hash="h")
        update = model.observe("e3", _inputs(3))
        store.commit_causal(update)
        posted: list[tuple[str, dict[str, Any]]] = []
        source._catch_up(lambda topic, payload: posted.append((topic, payload)))
    finally:
        store.close()
    assert "e3" in [p["exposure_id"] for t, p in posted if t == "exposure"]
    causal = [p for t, p in posted if t == "causal"]
    assert [p["exposure_id"] for p in causal] == ["e3"]
    expected = update.to_dict()
    assert causal[0]["index"] == expected["index"] == 1
    assert [s["cause"] for s in causal[0]["shares"]] == sorted(
        s["cause"] for s in expected["shares"]
    )
    assert [r["cause"] for r in causal[0]["ranking"]] == [r["cause"] for r in expected["ranking"]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Heartbeat:
    """A PUB socket on a fixed port sending status beats, that can go away and come back."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.context = zmq.Context()
        self._socket: zmq.Socket[bytes] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self.up()
        self._thread.start()

    def up(self) -> None:
        with self._lock:
            sock = self.context.socket(zmq.PUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(self.address)
            self._socket = sock

    def down(self) -> None:
        with self._lock:
            assert self._socket is not None
            self._socket.close(linger=0)
            self._socket = None

    def _beat(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._socket is not None:
                    self._socket.send_multipart([b"status", b'{"paused": false, "done": 3}'])
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._socket is not None:
            self.down()
        self.context.term()


def test_lost_daemon_is_shown_and_reconnects(tmp_path: Path) -> None:
    store = _store(tmp_path / "restart.duckdb")
    assert store.query_endpoint is not None
    address = f"tcp://127.0.0.1:{_free_port()}"
    beat = _Heartbeat(address)
    source = LiveSource(publish=address, query=store.query_endpoint, lost_after_s=0.5)
    states: list[str] = []

    async def wait_for(app: Dashboard, state: str) -> None:
        for _ in range(200):
            if app.state.connection == state:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"connection never became {state!r}; it is {app.state.connection!r}")

    async def scenario() -> None:
        app = make_app(TuiSettings(), source)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await wait_for(app, "ok")
            beat.down()
            await wait_for(app, "lost")
            await pilot.pause(0.3)
            states.append(str(app.query_one("#overview").render()))
            beat.up()
            await wait_for(app, "ok")
            await pilot.pause(0.3)
            states.append(str(app.query_one("#overview").render()))
            notes = [n.title for n in app._notifications]
            assert "Daemon lost" in notes and "Daemon back" in notes
            assert app.table.row_count == 3  # the history was read again
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        beat.close()
        store.close()
    assert "DAEMON LOST" in states[0]
    assert "● live" in states[1] and "LOST" not in states[1]


def test_live_source_posts_lost_then_reconnected(tmp_path: Path) -> None:
    store = _store(tmp_path / "source.duckdb")
    assert store.query_endpoint is not None
    address = f"tcp://127.0.0.1:{_free_port()}"
    beat = _Heartbeat(address)
    source = LiveSource(publish=address, query=store.query_endpoint, lost_after_s=0.5)
    posted: list[tuple[str, dict[str, Any]]] = []
    stop = threading.Event()
    source.history()
    follower = threading.Thread(
        target=source.follow, args=(lambda t, p: posted.append((t, p)), stop)
    )
    follower.start()

    def topics() -> list[str]:
        return [p.get("state", t) if t == "connection" else t for t, p in posted]

    def wait(condition: Any) -> None:
        deadline = time.monotonic() + 5
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)

    try:
        wait(lambda: "status" in topics())
        beat.down()
        wait(lambda: "lost" in topics())
        beat.up()
        wait(lambda: "reconnected" in topics())
    finally:
        stop.set()
        follower.join()
        beat.close()
        store.close()
    seen = topics()
    assert seen.index("status") < seen.index("lost") < seen.index("history")
    assert seen.index("history") < seen.index("reconnected")
