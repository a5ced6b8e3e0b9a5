"""The causal model in the daemon: inputs stored with each commit, updates stored and published,
a restart that replays without repeating, the summary's ranked causes, and `causalscope causal`.

A real DuckDB file; the tracker runs its worker in this process, or on the Ray actor when an
earlier test in the session started Ray (either way the same updates come back, in order).
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest

from causalscope.daemon.causal import CausalTracker, not_learned_message
from causalscope.daemon.store import SessionStore, summarize
from causalscope.models.causal import CausalUpdate, SessionCausalModel
from causalscope.models.causal.synthetic import draw_synthetic_session
from causalscope.models.records import ExposureRecord
from tests.daemon.cli_run import run_cli
from tests.daemon.store._records import make_record

REPO = Path(__file__).resolve().parents[2]
N = 60


def _records(n: int, seed: int = 4) -> list[ExposureRecord]:
    s = draw_synthetic_session(n_exposures=n, seed=seed)
    out = []
    for i in range(n):
        drift = float(s.measurements["total_drift_px"][i])
        inputs = s.inputs(i, ssnr_bfactor_angstrom2=100.0 + 2.0 * drift)
        out.append(make_record(f"e{i:03d}").model_copy(update={"causal": inputs}))
    return out


def _collect(tracker: CausalTracker, n: int) -> list[CausalUpdate]:
    got: list[CausalUpdate] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got.extend(tracker.poll(wait_s=0.5))
    return got


def test_updates_are_stored_in_commit_order_and_a_restart_replays_without_repeating(
    tmp_path: Path,
) -> None:
    records = _records(N)
    db = tmp_path / "S.duckdb"
    first, second = records[:40], records[40:]
    with SessionStore(db) as store:
        tracker = CausalTracker(discount=0.02)
        tracker.replay(*store.causal_history())
        for record in first:
            store.commit_exposure(record, params_hash="p")
            assert record.causal is not None
            tracker.observe(record.exposure_id, record.causal)
        updates = _collect(tracker, 40)
        for update in updates[:30]:  # the last ten are lost in a "crash"
            store.commit_causal(update)
        tracker.close()
        assert [u.exposure_id for u in updates] == [r.exposure_id for r in first]
        seq = store._con.execute("SELECT exposure_id FROM causal_inputs ORDER BY seq").fetchall()
        assert [row[0] for row in seq] == [r.exposure_id for r in first]
    with SessionStore(db) as store:
        tracker = CausalTracker(discount=0.02)
        rows, stored = store.causal_history()
        assert len(rows) == 40 and len(stored) == 30
        tracker.replay(rows, stored)
        for record in second:
            store.commit_exposure(record, params_hash="p")
            assert record.causal is not None
            tracker.observe(record.exposure_id, record.causal)
        resumed = _collect(tracker, 30)  # the ten lost, then the twenty new: none repeated
        tracker.close()
        assert [u.exposure_id for u in resumed] == [r.exposure_id for r in records[30:]]
        for update in resumed:
            store.commit_causal(update)
        n_rows = store._con.execute("SELECT count(*), max(model_index) FROM causal").fetchone()
        assert n_rows == (N, N)
    # the replayed model is exactly the one that saw everything in one run
    reference = SessionCausalModel()
    for record in records:
        assert record.causal is not None
        last = reference.observe(record.exposure_id, record.causal)
    assert resumed[-1].to_dict() == last.to_dict()


def test_summary_ranks_the_causes_and_the_command_exports_the_graph(tmp_path: Path) -> None:
    records = _records(N, seed=8)
    db = tmp_path / "S.duckdb"
    model = SessionCausalModel()
    with SessionStore(db) as store:
        for record in records:
            store.commit_exposure(record, params_hash="p")
            assert record.causal is not None
            store.commit_causal(model.observe(record.exposure_id, record.causal))
        summary = summarize(store._con)
    last = model.observe("probe", records[-1].causal)  # type: ignore[arg-type]
    assert summary.causal_exposures == N
    assert [c.cause for c in summary.causes][:1] == [last.ranking[0].cause]
    assert summary.causes[0].rank == 1 and summary.causes[0].mean_angstrom > 0
    text = summary.describe()
    assert "causes" in text and summary.causes[0].cause in text and "advice:" in text

    graphml, svg = tmp_path / "g.graphml", tmp_path / "g.svg"
    done = run_cli(
        "causal", str(db), "--json", "--graphml", str(graphml), "--svg", str(svg), cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["exposures"] == N and out["causes"][0]["cause"] == summary.causes[0].cause
    graph = nx.read_graphml(graphml)
    top = summary.causes[0]
    edge = next(d for u, _, d in graph.edges(data=True) if u == top.cause)
    assert edge["posterior_mean"] == pytest.approx(top.weight_mean)
    assert edge["posterior_sd"] == pytest.approx(top.weight_sd)
    ET.fromstring(svg.read_text())  # a well-formed picture

    one = run_cli("causal", str(db), "--exposure", "e010", cwd=REPO)
    assert one.returncode == 0, one.stderr
    assert "e010" in one.stdout and "unexplained" in one.stdout
    missing = run_cli("causal", str(db), "--exposure", "nope", cwd=REPO)
    assert missing.returncode == 2 and "'nope'" in missing.stderr


def test_a_session_without_causal_rows_says_so(tmp_path: Path) -> None:
    db = tmp_path / "S.duckdb"
    with SessionStore(db) as store:
        store.commit_exposure(make_record("a"), params_hash="p")
    done = run_cli("causal", str(db), cwd=REPO)
    assert done.returncode == 2
    assert "no causal ranking" in done.stderr and str(db) in done.stderr


def test_a_wild_fit_gets_a_log_line_that_names_it_and_its_values() -> None:
    records = _records(40)
    model = SessionCausalModel()
    updates = [model.observe(r.exposure_id, r.causal) for r in records if r.causal is not None]
    assert all(not_learned_message(u) is None for u in updates)
    assert records[-1].causal is not None
    wild = records[-1].causal.model_copy(update={"fit_resolution_angstrom": 30.0})
    message = not_learned_message(model.observe("wild_one", wild))
    assert message is not None
    assert message.startswith("wild_one: CTF fit resolution 30.00 A is far from the ")
    assert "did not learn" in message
