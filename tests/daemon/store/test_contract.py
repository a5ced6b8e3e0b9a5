"""The contract between the daemon and its readers: every message the store publishes fits its
topic's wire model with exactly the model's fields, and the views the dashboard reads return
the same shapes as the published rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from pydantic import BaseModel

from causalscope.actors.scoring import SessionScorer
from causalscope.config import ScoringSettings
from causalscope.daemon.client import TOPICS, parse_payload
from causalscope.daemon.client import wire as w
from causalscope.daemon.store import SessionStore
from causalscope.models.causal import SessionCausalModel
from causalscope.models.records import CausalInputs, PickingRecord
from causalscope.tui.source import RecordedSource
from tests.daemon.store._records import fail_flag, make_record, warn_flag
from tests.daemon.store.test_publish import LOCAL, _subscribe
from tests.daemon.test_evaluation import _update

STATUS: dict[str, Any] = {
    "session": "s",
    "elapsed_s": 1.0,
    "seen": 2,
    "done": 1,
    "pass": 1,
    "warn": 0,
    "fail": 0,
    "quarantined": 0,
    "queue": 1,
    "in_flight": 0,
    "workers": "1 actor",
    "devices": "cpu",
    "paused": False,
    "acquisition_per_min": None,
    "processing_per_min": 1.0,
    "keeping_up": True,
    "thresholds": {"ice_thickness_nm": 80.0},
    "reconstruction": {"version": 2, "particles": 33, "backlog": 0, "update_every": 100},
    "worker_health": {
        "configured": 2,
        "alive": 1,
        "replaced_after_failure": 1,
        "recycled_for_memory": 0,
        "failures": {"actor_died": 1, "out_of_memory": 0},
        "memory_bytes": [2**30, None],
    },
    "picker": "fine-tuned, round 2 (2 labelled, F1 0.43 shipped -> 0.71)",
}


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _fields(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def _check(model: type[BaseModel], payload: dict[str, Any], *, optional: set[str]) -> None:
    """``payload`` fits ``model`` and has every field it declares (bar ``optional``), no more."""
    assert isinstance(model.model_validate(payload), model)
    assert set(payload) <= _fields(model), set(payload) - _fields(model)
    assert _fields(model) - optional <= set(payload), _fields(model) - set(payload)


def _session(store: SessionStore) -> None:
    picking = PickingRecord(
        n_particles=2,
        particle_diameter_angstrom=120.0,
        mean_score=1.5,
        box_px=180,
        picks_xy_px=[(10.0, 20.0), (30.0, 40.0)],
        scores=[1.0, 2.0],
    )
    inputs = CausalInputs(
        ice_thickness_nm=40.0,
        dose_e_per_a2=40.0,
        total_drift_px=5.0,
        defocus_um=1.2,
        astigmatism_angstrom=100.0,
        fit_resolution_angstrom=4.0,
    )
    flags = [fail_flag("ice_thick", 95.0, 80.0), warn_flag("drift_early")]
    record = make_record("a", status="fail", flags=flags)
    store.commit_exposure(
        record.model_copy(update={"picking": picking, "causal": inputs}), params_hash="h"
    )
    store.commit_causal(SessionCausalModel(ranking_every=1).observe("a", inputs))
    store.record_seen("b", movie_path="movies/b.tiff", source="watcher")
    store.quarantine(exposure_id="b", origin="movies/b.tiff", code="unreadable", reason="bad")
    store.log_event(
        "alert", "Ice thick", code="ice", severity="warn", advice="move", exposure_id="a"
    )
    store.add_label("a", "reject")
    store.commit_evaluation(_update(2))
    store.add_class_label(1, "select")
    scorer = SessionScorer(ScoringSettings())
    store.commit_score(scorer.score_exposure(record.model_copy(update={"picking": picking})))
    store.publish(b"status", STATUS)


def test_every_published_message_fits_its_wire_model(tmp_path: Path, context: zmq.Context) -> None:
    with SessionStore(tmp_path / "S.duckdb", publish_address=LOCAL) as store:
        sub = _subscribe(context, store)
        _session(store)
        got: dict[str, dict[str, Any]] = {}
        while sub.poll(500, zmq.POLLIN):
            topic, payload = sub.recv_multipart()
            got[topic.decode()] = json.loads(payload)
    assert set(got) == set(TOPICS)
    _check(w.ExposureRow, got["exposure"], optional=set())
    _check(w.MotionRow, got["exposure"]["motion"], optional=set())
    for part, model in (("ctf", w.CtfRow), ("picking", w.PickingRow)):
        _check(model, got["exposure"][part], optional=set())
    for flag in got["exposure"]["flags"]:
        _check(w.FlagRow, flag, optional=set())
    _check(w.Event, got["event"], optional=set())
    _check(w.Label, got["label"], optional=set())
    _check(w.QuarantineRow, got["quarantine"], optional=set())
    _check(w.CausalUpdate, got["causal"], optional=set())
    for cause in got["causal"]["ranking"]:
        _check(w.Cause, cause, optional=set())
    _check(w.Status, got["status"], optional={"finished"})
    _check(w.ReconstructionStatus, got["status"]["reconstruction"], optional=set())
    _check(w.WorkerHealth, got["status"]["worker_health"], optional=set())
    update = got["evaluation"]
    _check(w.EvaluationUpdate, update, optional=set())
    _check(w.ClassSet, update["class_set"], optional=set())
    for row in update["class_set"]["classes"]:
        _check(w.ClassRow, row, optional=set())
    _check(w.MapRow, update["map"], optional=set())
    _check(w.Forecast, update["forecast"], optional=set())
    _check(w.ClassLabel, got["class_label"], optional=set())
    _check(w.Score, got["score"], optional=set())
    for obligation in got["score"]["obligations"]:
        _check(w.Obligation, obligation, optional=set())
    assert {o["name"] for o in got["score"]["obligations"]} >= {"fit_within_nyquist"}
    # a payload that lacks a field, or has one of the wrong kind, does not fit
    assert parse_payload("exposure", {**got["exposure"], "state": "lost"}) is None
    broken = {k: v for k, v in got["causal"].items() if k != "shares"}
    assert parse_payload("causal", broken) is None
    assert parse_payload("no such topic", got["event"]) is None


def test_the_history_has_the_published_shapes(tmp_path: Path) -> None:
    """The dashboard's history (the views) against the published rows: the same exposure row
    less the per-frame shifts, and the causal verdict as published less its ranking."""
    path = tmp_path / "S.duckdb"
    with SessionStore(path) as store:
        _session(store)
        published = store.exposure_row("a")
    snapshot = RecordedSource.open(path).history()
    row = next(r for r in snapshot.rows if r["exposure_id"] == "a")
    assert published is not None
    assert len(published["motion"].pop("shifts_px")) == 4
    assert row == published
    _check(w.ExposureRow, row, optional=set())
    _check(w.MotionRow, row["motion"], optional={"shifts_px"})
    assert [f["code"] for f in row["flags"]] == ["ice_thick", "drift_early"]
    assert row["picking"]["n_particles"] == 2
    # the running reconstructions: every update less the bulky lists, the latest whole
    (update,) = snapshot.evaluations
    _check(w.EvaluationUpdate, update, optional=set())
    _check(w.ClassSet, update["class_set"], optional={"classes"})
    _check(w.MapRow, update["map"], optional={"fsc_masked", "fsc_unmasked"})
    assert snapshot.class_set is not None and snapshot.reconstruction is not None
    _check(
        w.ClassSet, {k: v for k, v in snapshot.class_set.items() if k != "version"}, optional=set()
    )
    _check(
        w.MapRow,
        {k: v for k, v in snapshot.reconstruction.items() if k != "version"},
        optional=set(),
    )
    assert snapshot.class_labels == {1: "select"}
    (verdict,) = snapshot.causal
    _check(w.CausalVerdict, verdict, optional=set())
    assert snapshot.causes is not None
    for cause in snapshot.causes:
        _check(w.Cause, cause, optional=set())
    (alert,) = snapshot.alerts
    _check(w.Alert, alert, optional=set())
    _check(w.AlertData, alert["data"], optional=set())
    assert alert["data"]["code"] == "ice"
    assert w.Alert.model_validate(alert).data.severity == "warn"
    _check(w.QuarantineRow, snapshot.quarantine[0], optional=set())
    assert snapshot.status is not None
    # a finished session's status: no thresholds, reconstructions, workers or picker of a
    # running one
    running = {"thresholds", "reconstruction", "worker_health", "picker"}
    _check(w.Status, snapshot.status, optional=running)
