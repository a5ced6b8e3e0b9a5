"""The running reconstructions on the dashboard: read from a session file (and from an older one
without them), the gallery cut back into class averages, the verdict's words, the panel on a
recorded session, select/reject sent as actions, and a running session's updates arriving."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from rich.text import Text

from causalscope.config import TuiSettings
from causalscope.daemon.client import catch_up, wire
from causalscope.daemon.client.gallery import gallery_tiles
from causalscope.daemon.client.local import open_session_file, run_select
from causalscope.daemon.store import SessionStore
from causalscope.tui import make_app
from causalscope.tui.app import Dashboard
from causalscope.tui.messages import ClassLabelStored, EvaluationUpdated, message_for
from causalscope.tui.reconstruction import ReconstructionState, about, verdict_text
from causalscope.tui.source import RecordedSource, Snapshot
from causalscope.tui.widgets.reconstruction import ClassTile, FscPlot, ResolutionPlot
from tests.daemon.store._records import make_record
from tests.tui._pilot import press, settle, shown_text
from tests.tui._reconstruction import (
    CLASS_PARTICLES,
    LABELLED_AFTER,
    LABELLED_BEFORE,
    PARTICLES,
    TARGET,
    averages,
    make_update,
    particles_needed,
    rh_resolution,
    store_evaluations,
    write_gallery,
)
from tests.tui._session import ActionLog, recorded_source

# the classes the recorded session rejects: junk (8, 9, 11) and the operator's (7, 10)
REJECTED = {8, 9, 11, LABELLED_BEFORE[0], LABELLED_AFTER[0]}


def _published(update: Any) -> dict[str, Any]:
    """An update as the store publishes it (JSON on the wire)."""
    return dict(json.loads(json.dumps(update.to_dict())))


def _light(published: dict[str, Any]) -> dict[str, Any]:
    """The history's shape: no class list, no FSC curves."""
    out = copy.deepcopy(published)
    if out["class_set"] is not None:
        out["class_set"].pop("classes")
    if out["map"] is not None:
        out["map"].pop("fsc_masked")
        out["map"].pop("fsc_unmasked")
    return out


# -- the history --------------------------------------------------------------------------------


def test_a_session_file_gives_every_update_the_latest_classes_and_map_and_the_labels(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.duckdb"
    with SessionStore(path) as store:
        store.commit_exposure(make_record("a"), params_hash="h")
        updates = store_evaluations(store, tmp_path, gallery=False)
    snapshot = RecordedSource.open(path).history()
    published = [_published(u) for u in updates]
    assert [u["version"] for u in snapshot.evaluations] == [1, 2, 3, 4, 5]
    for read, sent in zip(snapshot.evaluations, published, strict=True):
        assert read == _light(sent)
        wire.EvaluationUpdate.model_validate(read)
    last = published[-1]
    assert snapshot.class_set == {"version": 5, **last["class_set"]}
    assert snapshot.reconstruction == {"version": 5, **last["map"]}
    assert snapshot.class_labels == dict([LABELLED_BEFORE, LABELLED_AFTER])
    assert [r["exposure_id"] for r in snapshot.rows] == ["a"]
    # what the view gives is what a subscriber hears: the whole update, as published
    con = open_session_file(path)
    try:
        messages = catch_up(lambda sql, p: run_select(con, sql, p), "1970-01-01T00:00:00")
    finally:
        con.close()
    heard = [m for topic, m in messages if topic == "evaluation"]
    assert heard == published
    labels = [wire.ClassLabel.model_validate(m) for topic, m in messages if topic == "class_label"]
    assert [(c.class_index, c.label) for c in labels] == [LABELLED_BEFORE, LABELLED_AFTER]


def test_a_schema_2_file_has_no_reconstructions_and_a_file_without_the_view_gets_it(
    tmp_path: Path,
) -> None:
    old, viewless = tmp_path / "old.duckdb", tmp_path / "viewless.duckdb"
    for path in (old, viewless):
        with SessionStore(path) as store:
            store.commit_exposure(make_record("a"), params_hash="h")
            store.commit_evaluation(make_update(2, tmp_path, {}))
    with duckdb.connect(str(old)) as con:  # as version 2 wrote it
        con.execute("DROP VIEW evaluation_updates")
        for table in ("classes", "class_sets", "reconstructions", "forecasts", "evaluations"):
            con.execute(f"DROP TABLE {table}")
        con.execute("DROP TABLE class_labels")
        con.execute("DROP SEQUENCE class_label_id")
        con.execute("UPDATE schema_version SET version = 2")
    snapshot = RecordedSource.open(old).history()
    assert [r["exposure_id"] for r in snapshot.rows] == ["a"]
    assert snapshot.evaluations == [] and snapshot.class_labels == {}
    assert snapshot.class_set is None and snapshot.reconstruction is None
    with duckdb.connect(str(viewless)) as con:  # schema 3 before the view
        con.execute("DROP VIEW evaluation_updates")
    snapshot = RecordedSource.open(viewless).history()
    assert [u["version"] for u in snapshot.evaluations] == [2]
    assert snapshot.reconstruction is not None and snapshot.reconstruction["version"] == 2


def test_gallery_tiles_are_the_averages_the_daemon_drew(tmp_path: Path) -> None:
    import torch

    from causalscope.daemon.formats.classes import class_gallery
    from causalscope.models.thumbnails import to_uint8

    pictures = averages()
    keep = np.array([k not in REJECTED for k in range(len(pictures))])
    sheet = class_gallery(pictures, keep)
    tiles = gallery_tiles(sheet, len(pictures))
    diagonal = np.eye(pictures.shape[-1], dtype=bool) | np.eye(pictures.shape[-1], dtype=bool)[::-1]
    for k, tile in enumerate(tiles):
        truth = to_uint8(torch.as_tensor(pictures[k]))
        if keep[k]:
            assert np.array_equal(tile, truth), k
        else:  # crossed out: the diagonals black, the rest the average
            assert (tile[diagonal] == 0).all() and np.array_equal(tile[~diagonal], truth[~diagonal])
    three = gallery_tiles(class_gallery(pictures[:3], keep[:3]), 3)  # fewer than ten to a row
    assert [t.shape for t in three] == [pictures.shape[1:]] * 3
    with pytest.raises(ValueError, match="a gallery of 12 classes is 2 x 10 square tiles"):
        gallery_tiles(sheet[:, :-1], 12)


# -- the words ----------------------------------------------------------------------------------


def _state(snapshot: Snapshot, **status: Any) -> ReconstructionState:
    return ReconstructionState(
        updates=snapshot.evaluations,
        class_set=snapshot.class_set,
        reconstruction=snapshot.reconstruction,
        class_labels=snapshot.class_labels,
        status={"version": 5, "particles": 12_300, "backlog": 0, "update_every": 2_500, **status},
    )


def test_verdict_states_resolution_particles_and_forecast(snapshot_session: Snapshot) -> None:
    needed = particles_needed(TARGET)
    hours = (needed - PARTICLES[-1]) / 15_000
    assert (about(needed), f"{hours:.1f}") == ("58,000", "3.0")  # the truth, to what is shown
    line = verdict_text(_state(snapshot_session)).plain
    assert line.startswith(
        "4.1 Å from 12,300 particles; 3.0 Å forecast at ~58,000 (~3.0 h at current rate)"
    )
    assert f"{rh_resolution(2 * PARTICLES[-1]):.1f} Å at 2× particles" in line
    assert "B 60 ± 6 Å²" in line and line.endswith("evaluator keeping up")
    narrow = verdict_text(_state(snapshot_session), 78).plain  # 80 columns less padding
    assert narrow.startswith("4.1 Å from 12,300 particles; 3.0 Å forecast at ~58,000 (~3.0 h)")
    assert len(narrow) <= 78
    behind = verdict_text(_state(snapshot_session, backlog=7)).plain
    assert behind.endswith("evaluator 7 exposures behind")
    first = ReconstructionState(updates=snapshot_session.evaluations[:1])
    assert verdict_text(first).plain == "3D map: none yet"
    reached = copy.deepcopy(snapshot_session.evaluations[-1])
    reached["forecast"]["target_resolution_angstrom"] = 4.5
    assert "target 4.5 Å reached" in verdict_text(ReconstructionState(updates=[reached])).plain
    assert (about(840), about(1_234), about(57_873)) == ("840", "1,200", "58,000")
    assert isinstance(verdict_text(ReconstructionState()), Text)
    # a planned session: what its end gives comes first after the forecast, coloured by chance
    planned = copy.deepcopy(snapshot_session.evaluations[-1])
    planned["forecast"].update(resolution_at_end_angstrom=3.4, p_reach_target=0.12)
    ending = verdict_text(ReconstructionState(updates=[planned]))
    assert "(~3.0 h at current rate) · by the end ~3.4 Å, P(3.0 Å) 12%" in ending.plain
    start = ending.plain.index("by the end")
    assert any(s.start <= start < s.end and "red" in str(s.style) for s in ending.spans)


# -- the dashboard ------------------------------------------------------------------------------


def _tiles(app: Dashboard) -> list[ClassTile]:
    return list(app.query(ClassTile))


def test_panel_shows_the_recorded_classes_fsc_and_forecast(snapshot_session: Snapshot) -> None:
    assert snapshot_session.class_set is not None
    sheet_path = Path(snapshot_session.class_set["gallery_path"])
    from causalscope.tui.widgets.image import _grey

    truth = gallery_tiles(_grey(sheet_path.read_bytes()), len(CLASS_PARTICLES))

    async def scenario() -> None:
        app = make_app(TuiSettings(), recorded_source(snapshot_session, ActionLog()))
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot)
            assert "map 4.1 Å from 12,300 · 7/12 classes · evaluator keeping up" in str(
                app.query_one("#overview").render()
            )
            await press(pilot, "m")
            tiles = _tiles(app)
            assert [t.class_index for t in tiles] == list(range(len(CLASS_PARTICLES)))
            for tile, picture in zip(tiles, truth, strict=True):
                assert tile.image is not None and np.array_equal(tile.image, picture)
                rejected = tile.class_index in REJECTED
                assert tile.has_class("-rejected") == rejected
                assert tile.has_class("-selected") != rejected
            assert "✗" in str(tiles[LABELLED_BEFORE[0]].border_title)
            assert str(tiles[0].border_subtitle) == "2.1k 8Å"
            assert tiles[0].has_class("-cursor")
            verdict = shown_text(app.query_one("#recon-verdict")).strip()
            assert verdict.startswith("4.1 Å from 12,300 particles; 3.0 Å forecast at ~58,000")
            info = shown_text(app.query_one("#class-info")).strip()
            assert info.startswith("class 1 · 2,100 particles (ESS 1,680) · 8.5 Å")
            fsc = app.query_one("#recon-fsc", FscPlot)
            assert fsc.map is not None and fsc.map["version"] == 5
            assert "FSC 4.1 Å at 0.143" in shown_text(fsc)
            points = app.query_one("#recon-resolution", ResolutionPlot).state.map_points()
            assert [n for n, _ in points] == list(PARTICLES[1:])
            assert [d for _, d in points] == pytest.approx(
                [rh_resolution(n) for n in PARTICLES[1:]]
            )
            forecast = app.query_one("#recon-resolution", ResolutionPlot).state.forecast_points()
            assert forecast == pytest.approx(
                [
                    (PARTICLES[-1], 4.1),
                    (2 * PARTICLES[-1], rh_resolution(2 * PARTICLES[-1])),
                    (particles_needed(TARGET), TARGET),
                ]
            )
            await press(pilot, "escape")
            assert not app.screen.has_class("-recon") and app.table.has_focus

    asyncio.run(scenario())


def test_select_and_reject_send_the_class_label_action(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        log = ActionLog()
        app = make_app(TuiSettings(), recorded_source(snapshot_session, log))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "m", "right", "right")
            assert app.query_one("#gallery").current()["class_index"] == 2  # type: ignore[attr-defined]
            await press(pilot, "r")
            assert log.calls[-1] == ("class_label", {"class_index": 2, "label": "reject"})
            assert app.state.class_labels[2] == "reject"
            assert _tiles(app)[2].has_class("-rejected")
            assert "REJECTED by you (next update)" in shown_text(app.query_one("#class-info"))
            await press(pilot, "down", "a")  # a row down: class index 2 + 5 columns
            assert log.calls[-1] == ("class_label", {"class_index": 7, "label": "select"})
            assert _tiles(app)[7].has_class("-selected")
            assert [a for a, _ in log.calls] == ["class_label", "class_label"]

    asyncio.run(scenario())


def test_a_finished_session_says_it_cannot_label_classes(snapshot_session: Snapshot) -> None:
    async def scenario() -> None:
        app = make_app(TuiSettings(), RecordedSource(snapshot_session, name="finished"))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "m", "r")
            messages = [n.message for n in app._notifications]
            assert any("the session is not running" in m for m in messages)
            assert app.state.class_labels == snapshot_session.class_labels

    asyncio.run(scenario())


def test_a_session_without_reconstructions_says_so(snapshot_session: Snapshot) -> None:
    bare = Snapshot(rows=copy.deepcopy(snapshot_session.rows), status={"session": "s"})

    async def scenario() -> None:
        app = make_app(TuiSettings(), RecordedSource(bare, name="bare"))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert "m: classes & map" not in str(app.query_one("#overview").render())
            await press(pilot, "m", "r")
            verdict = shown_text(app.query_one("#recon-verdict")).strip()
            assert verdict == "No running reconstructions in this session"
            assert _tiles(app) == [] and list(app._notifications) == []  # nothing to label
            assert "no map yet" in shown_text(app.query_one("#recon-fsc", FscPlot))

    asyncio.run(scenario())


def test_a_new_update_and_a_label_arrive_and_the_gallery_is_asked_of_the_session(
    snapshot_session: Snapshot, tmp_path: Path
) -> None:
    """A running session's update whose gallery is not on this machine: the dashboard asks
    for it with the ``thumbnail`` action and cuts it up."""
    update = make_update(6, tmp_path / "elsewhere", dict([LABELLED_BEFORE, LABELLED_AFTER]))
    png = write_gallery(make_update(6, tmp_path, dict([LABELLED_BEFORE, LABELLED_AFTER])))
    asked: list[dict[str, Any]] = []

    def sink(action: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append({"action": action, **params})
        return {"png_base64": base64.b64encode(png.read_bytes()).decode(), "version": 6}

    source = recorded_source(snapshot_session)
    source._sink = sink
    label = {"id": 3, "class_index": 0, "label": "reject", "labelled_at": "x", "labelled_by": "op"}
    source._messages = [("evaluation", _published(update)), ("class_label", label)]
    assert isinstance(message_for("evaluation", _published(update)), EvaluationUpdated)
    assert message_for("class_label", label) == ClassLabelStored(0, "reject")

    async def scenario() -> None:
        app = make_app(TuiSettings(), source)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await press(pilot, "m")
            assert app.state.class_set is not None and app.state.class_set["version"] == 6
            assert asked == [{"action": "thumbnail", "kind": "class_gallery"}]
            assert all(t.image is not None for t in _tiles(app))
            assert _tiles(app)[0].has_class("-rejected")
            assert "from 15,000 particles" in shown_text(app.query_one("#recon-verdict"))

    asyncio.run(scenario())


def test_a_running_sessions_update_and_class_label_go_through_its_endpoints(
    tmp_path: Path,
) -> None:
    """The store publishes an update after the dashboard subscribed; `r` reaches the control
    endpoint, which stores the label; a label stored meanwhile arrives on ``class_label``."""
    import time

    from causalscope.daemon.control import ControlServer, new_token
    from causalscope.daemon.store import query_endpoint
    from causalscope.tui import LiveSource
    from tests.tui._session import STATUS

    store = SessionStore(
        tmp_path / "live.duckdb",
        publish_address="tcp://127.0.0.1:0",
        query_address="tcp://127.0.0.1:0",
    )
    store.commit_exposure(make_record("e0"), params_hash="h")
    update = make_update(2, tmp_path, {})
    write_gallery(update)
    token = new_token()

    def handle(body: dict[str, Any]) -> dict[str, Any]:
        if body["action"] == "class_label":
            store.add_class_label(int(body["class_index"]), str(body["label"]))
            return {}
        raise ValueError(f"not in this test: {body['action']}")

    server = ControlServer("tcp://127.0.0.1:0", token=token, handler=handle)
    assert store.publish_endpoint is not None and store.query_endpoint is not None
    source = LiveSource(
        publish=store.publish_endpoint,
        query=store.query_endpoint,
        control=server.endpoint,
        token=token,
    )

    async def session_loop(stop: asyncio.Event) -> None:
        beat = 0.0
        while not stop.is_set():
            server.serve_pending()
            if time.monotonic() - beat > 0.2:
                store.publish(b"status", STATUS)
                beat = time.monotonic()
            await asyncio.sleep(0.01)

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
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                await until(lambda: app.state.status is not None, "subscribed")
                assert app.state.evaluations == {}
                store.commit_evaluation(update)
                await until(lambda: app.state.class_set is not None, "the update arrived")
                await press(pilot, "m", "r")
                rows = query_endpoint(
                    store.query_endpoint or "", "SELECT class_index, label FROM class_labels"
                ).rows
                assert rows == ((0, "reject"),)
                await until(lambda: app.state.class_labels == {0: "reject"}, "label stored")
                store.add_class_label(5, "select")  # another dashboard's: heard on class_label
                await until(lambda: app.state.class_labels.get(5) == "select", "label published")
                await pilot.pause(0.3)
                assert _tiles(app)[0].has_class("-rejected")
                assert all(t.image is not None for t in _tiles(app))
                await pilot.press("q")
        finally:
            stop.set()
            await loop_task

    try:
        asyncio.run(scenario())
    finally:
        server.close()
        store.close()
