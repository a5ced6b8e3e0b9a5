"""The running reconstructions in the session: the tracker feeds the evaluator in commit order
and asks for updates on its schedule; the store keeps each update once, with its classes, map
and forecast, and tells a restarted evaluator what to take again."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from causalscope.actors._evaluation_results import (
    ClassRow,
    ClassSetUpdate,
    EvaluationUpdate,
    ForecastUpdate,
    MapUpdate,
)
from causalscope.daemon.evaluation import EvaluationTracker
from causalscope.daemon.store import SessionStore
from causalscope.models.records import PickingRecord
from tests.daemon.store._records import make_record


def _update(version: int, *, with_map: bool = True) -> EvaluationUpdate:
    classes = tuple(
        ClassRow(
            k,
            10 + k,
            9.5,
            12.0 if k else None,
            0.1 * k,
            k < 2,
            k != 1,
            "reject" if k == 1 else None,
        )
        for k in range(3)
    )
    class_set = ClassSetUpdate(3, 33, 21, 4.0, "a.mrcs", "a.png", "model.star", "sel.star", classes)
    fsc = tuple(float(v) for v in np.linspace(1, 0, 9))
    volume = MapUpdate(33, "C1", 2.0, 8.0, 9.0, 10.0, fsc, fsc, "h1", "h2", "m", "pp", 0.8, 30.0)
    forecast = ForecastUpdate(33, None, None, 80.0, 3.0, 1e6, 7.0, 120.0, 2.5)
    return EvaluationUpdate(
        version, 33, 3, 1.5, class_set, volume if with_map else None, forecast if with_map else None
    )


def test_an_update_is_stored_once_with_its_classes_map_and_forecast(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with SessionStore(path) as store:
        assert store.commit_evaluation(_update(1, with_map=False))
        assert store.commit_evaluation(_update(2))
        assert not store.commit_evaluation(_update(2))  # handed over again after a restart
        store.add_class_label(1, "reject")
        store.add_class_label(1, "select")
        with pytest.raises(ValueError, match="class label must be one of"):
            store.add_class_label(1, "accept")
        _, version, labels = store.evaluation_history()
        assert version == 2 and labels == {1: "select"}
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT version FROM evaluations ORDER BY 1").fetchall() == [(1,), (2,)]
        rows = con.execute(
            "SELECT class_index, selected, label, image, resolution_angstrom FROM classes "
            "WHERE version = 2 ORDER BY 1"
        ).fetchall()
        assert rows == [
            (0, True, None, "1@a.mrcs", None),
            (1, False, "reject", "2@a.mrcs", 12.0),
            (2, True, None, "3@a.mrcs", 12.0),
        ]
        assert con.execute("SELECT count(*) FROM reconstructions").fetchone() == (1,)
        fsc = con.execute("SELECT fsc_masked->>'$[8]' FROM reconstructions").fetchone()
        assert fsc is not None and float(fsc[0]) == 0.0
        forecast = con.execute("SELECT hours_to_target, bfactor_angstrom2 FROM forecasts")
        assert forecast.fetchall() == [(2.5, None)]


def test_a_restart_hands_over_the_usable_exposures_with_particles_in_commit_order(
    tmp_path: Path,
) -> None:
    picked = PickingRecord(n_particles=5, particle_diameter_angstrom=100.0, box_px=32)
    with SessionStore(tmp_path / "s.duckdb") as store:
        for exposure_id, status, n in (("b", "pass", 5), ("a", "warn", 5), ("c", "fail", 5)):
            record = make_record(exposure_id, status=status, outputs={"particles_star": f"{n}"})
            record = record.model_copy(update={"picking": picked})
            store.commit_exposure(record, params_hash="h")
        none_picked = picked.model_copy(update={"n_particles": 0})
        empty = make_record("d", outputs={"particles_star": "x"})
        empty = empty.model_copy(update={"picking": none_picked})
        store.commit_exposure(empty, params_hash="h")
        store.commit_exposure(make_record("e"), params_hash="h")  # no particles extracted
        stars, version, _ = store.evaluation_history()
    assert [(e, n) for e, _, n in stars] == [("b", 5), ("a", 5)]  # not failed, not empty
    assert version is None


class _Evaluator:
    """Stands in for the evaluator in process: records calls, answers at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.version = 0

    def consume(self, exposure_id: str, star: str) -> int:
        if star == "bad":
            raise ValueError(f"{star}: not a STAR file")
        self.calls.append(("consume", exposure_id))
        return 1

    def update(
        self,
        *,
        labels: dict[int, str],
        particles_per_hour: float | None,
        hours_left: float | None = None,
    ) -> object:
        self.version += 1
        self.calls.append(("update", dict(labels)))
        self.hours_left = hours_left
        return _update(self.version)

    def latest(self) -> object:
        return None


def _tracker(
    tmp_path: Path, evaluator: _Evaluator, update_every: int, session_hours: float | None = None
) -> EvaluationTracker:
    from causalscope.actors.evaluation import EvaluatorSettings

    tracker = EvaluationTracker(
        EvaluatorSettings(particle_diameter_angstrom=100.0),
        tmp_path,
        update_every=update_every,
        idle_s=0.2,
        session_hours=session_hours,
    )
    tracker._worker = evaluator  # in process; the actor's own behaviour is tested in actors/
    return tracker


def test_the_tracker_updates_after_enough_particles_when_idle_and_when_relabelled(
    tmp_path: Path,
) -> None:
    evaluator = _Evaluator()
    tracker = _tracker(tmp_path, evaluator, update_every=100)
    tracker.committed("e1", "e1.star", 60)
    assert tracker.poll() == []  # 60 < 100
    tracker.committed("e2", "bad", 0)
    tracker.committed("e3", "e3.star", 60)
    updates = tracker.poll()
    assert [u.version for u in updates] == [1]
    assert evaluator.calls[:3] == [("consume", "e1"), ("consume", "e3"), ("update", {})]
    assert tracker.errors == ["e2: bad: not a STAR file"]  # reported, the session goes on
    tracker.committed("e4", "e4.star", 10)
    assert tracker.poll() == []
    time.sleep(0.3)  # quiet: what is new is folded in
    assert [u.version for u in tracker.poll()] == [2]
    tracker.relabel(4, "reject")
    assert [u.version for u in tracker.poll()] == [3]
    assert evaluator.calls[-1] == ("update", {4: "reject"})
    assert tracker.poll() == []


def test_a_planned_session_tells_each_update_the_hours_left_across_a_restart(
    tmp_path: Path,
) -> None:
    """The clock starts at the first particles, not before; it is kept beside the evaluator's
    state, so a restarted tracker counts from the same start; past the plan, 0 h are left."""
    import json

    evaluator = _Evaluator()
    tracker = _tracker(tmp_path, evaluator, update_every=10, session_hours=8.0)
    assert tracker.hours_left() is None
    tracker.committed("e1", "e1.star", 0)  # no particles: the clock has not started
    assert tracker.hours_left() is None
    tracker.committed("e2", "e2.star", 20)
    tracker.poll(final=True)
    assert evaluator.hours_left == pytest.approx(8.0, abs=0.01)
    started = json.loads((tmp_path / "session_start.json").read_text())["started_at"]
    assert abs(started - time.time()) < 60
    # a restart three hours later: the same start
    (tmp_path / "session_start.json").write_text(json.dumps({"started_at": started - 3 * 3600}))
    again = _tracker(tmp_path, _Evaluator(), update_every=10, session_hours=8.0)
    assert again.hours_left() == pytest.approx(5.0, abs=0.01)
    late = _tracker(tmp_path, _Evaluator(), update_every=10, session_hours=2.0)
    assert late.hours_left() == 0.0
    assert _tracker(tmp_path, _Evaluator(), update_every=10).hours_left() is None  # no plan


def test_the_forecast_of_the_session_end_is_stored_and_summarised(tmp_path: Path) -> None:
    from causalscope.daemon.store import summarize

    end = dataclasses.replace(
        _update(1).forecast,
        hours_left=5.0,
        particles_at_end=40_000.0,
        resolution_at_end_angstrom=3.4,
        p_reach_target=0.12,
    )
    path = tmp_path / "s.duckdb"
    with SessionStore(path) as store:
        assert store.commit_evaluation(dataclasses.replace(_update(1), forecast=end))
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(
            "SELECT hours_left, particles_at_end, resolution_at_end_angstrom, p_reach_target "
            "FROM forecasts"
        ).fetchall()
        text = summarize(con).describe()
    assert row == [(5.0, 40_000.0, 3.4, 0.12)]
    assert "by the end  ~3.4 A from ~40,000 particles in 5.0 h left of the plan" in text
    assert "P(reach 3.0 A) = 12%" in text


def test_the_schedule_grows_while_updates_take_longer_than_collecting(tmp_path: Path) -> None:
    class Slow(_Evaluator):
        def update(self, **kwargs: object) -> object:
            time.sleep(0.5)
            return super().update(**kwargs)  # type: ignore[arg-type]

    tracker = _tracker(tmp_path, Slow(), update_every=10)
    started = time.monotonic()
    for i in range(20):  # 1000 particles in about 1.2 s
        tracker.committed(f"e{i}", f"e{i}.star", 50)
        time.sleep(0.06)
    assert len(tracker.poll()) == 1
    # the next update waits for what arrives in twice the update's time (>= 0.5 s), at the
    # rate measured until the update ended
    rate = 1000 / (time.monotonic() - started)
    assert 2 * 0.5 * rate * 0.9 <= tracker.threshold <= 2 * 2.0 * rate


def test_the_control_endpoint_labels_classes_and_sends_the_latest_gallery(
    tmp_path: Path,
) -> None:
    """``class_label`` (stored, and handed to the evaluator) and ``thumbnail`` of kind
    ``class_gallery`` through the endpoint, carried out by the live session's handler."""
    import base64
    import threading

    from causalscope.daemon.control import ControlError, ControlServer, control_request
    from causalscope.daemon.live import LiveSession
    from causalscope.daemon.live_control import act

    tracker = _tracker(tmp_path, _Evaluator(), update_every=100)
    with SessionStore(tmp_path / "s.duckdb") as store:
        session = LiveSession.__new__(LiveSession)  # the handler's state only
        session.store, session.scheduler, session.evaluation = store, object(), tracker  # type: ignore[assignment]
        server = ControlServer(
            "tcp://127.0.0.1:0", token="t", handler=lambda request: act(session, request)
        )
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                server.serve_pending()
                stop.wait(0.01)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with pytest.raises(ControlError, match="no 2D classes yet"):
                control_request(server.endpoint, "t", "thumbnail", kind="class_gallery")
            # a label needs the class: none before the first class set, nor past its last
            with pytest.raises(ControlError, match="no class 2: this session has no 2D classes"):
                control_request(server.endpoint, "t", "class_label", class_index=2, label="reject")
            gallery = tmp_path / "classes.png"
            gallery.write_bytes(b"\x89PNG\r\n\x1a\n picture")
            latest = _update(4)
            assert latest.class_set is not None
            class_set = dataclasses.replace(latest.class_set, gallery_path=str(gallery))
            tracker.latest = dataclasses.replace(latest, class_set=class_set)
            last = class_set.n_classes - 1
            with pytest.raises(ControlError, match=f"no class {last + 1}: .* 0 to {last}"):
                control_request(
                    server.endpoint, "t", "class_label", class_index=last + 1, label="reject"
                )
            assert tracker.labels == {} and store.evaluation_history()[2] == {}
            reply = control_request(
                server.endpoint, "t", "class_label", class_index=last, label="reject"
            )
            assert reply["class_index"] == last
            assert tracker.labels == {last: "reject"}
            assert store.evaluation_history()[2] == {last: "reject"}
            reply = control_request(server.endpoint, "t", "thumbnail", kind="class_gallery")
            assert base64.b64decode(reply["png_base64"]) == gallery.read_bytes()
            assert reply["version"] == 4
            gallery.unlink()
            with pytest.raises(ControlError, match="cannot read the class gallery"):
                control_request(server.endpoint, "t", "thumbnail", kind="class_gallery")
        finally:
            stop.set()
            thread.join(timeout=2)
            server.close()
