"""`causalscope summary` and `causalscope query` as a user runs them, on a closed session file
and on one a running store holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from causalscope.daemon.store import SessionStore
from tests.daemon.cli_run import run_cli
from tests.daemon.store._records import fail_flag, make_record


@pytest.fixture
def session(tmp_path: Path) -> Path:
    path = tmp_path / "S.duckdb"
    with SessionStore(path) as store:
        store.record_seen("a", movie_path="movies/a.tiff", source="watcher")
        store.commit_exposure(make_record("a"), params_hash="p", latency_s=2.0)
        store.record_seen("b", movie_path="movies/b.tiff", source="watcher")
        record = make_record("b", status="fail", flags=[fail_flag("drift", 40.0, 30.0)])
        store.commit_exposure(record, params_hash="p", latency_s=4.0)
        store.quarantine(exposure_id=None, origin="x.tiff", code="unreadable_file", reason="?")
    return path


def test_summary_and_query_of_a_closed_session(session: Path, tmp_path: Path) -> None:
    text = run_cli("summary", str(session), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "seen 2   done 2" in text.stdout
    assert "failures    drift 1" in text.stdout
    assert "quarantine  unreadable_file 1" in text.stdout
    assert text.stderr == ""

    as_json = run_cli("summary", str(session), "--json", cwd=tmp_path)
    assert json.loads(as_json.stdout)["median_latency_s"] == 3.0

    sql = "SELECT exposure_id, gate_status, latency_s FROM exposures ORDER BY exposure_id"
    table = run_cli("query", str(session), sql, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["exposure_id", "gate_status", "latency_s"]
    assert lines[2].split() == ["a", "pass", "2"] and lines[3].split() == ["b", "fail", "4"]
    assert lines[-1] == "(2 rows)"

    csv = run_cli("query", str(session), sql, "--csv", cwd=tmp_path)
    assert csv.stdout.splitlines() == [
        "exposure_id,gate_status,latency_s",
        "a,pass,2.0",
        "b,fail,4.0",
    ]


def test_refusals_and_missing_files(session: Path, tmp_path: Path) -> None:
    refused = run_cli("query", str(session), "DELETE FROM exposures", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("causalscope: error: Query refused")
    assert "DELETE" in refused.stderr and "S.duckdb" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = run_cli("summary", str(tmp_path / "nope.duckdb"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "nope.duckdb does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_a_running_session_is_read_through_its_endpoint(session: Path, tmp_path: Path) -> None:
    # This process holds the file (DuckDB's lock keeps the CLI's process out of it).
    with SessionStore(session, query_address="tcp://127.0.0.1:0") as store:
        store.record_seen("c", movie_path="movies/c.tiff", source="stream")
        query = run_cli(
            "query",
            str(session),
            "SELECT exposure_id, state FROM exposures",
            "--json",
            cwd=tmp_path,
        )
        assert query.returncode == 0, query.stderr
        assert "held by a running session" in query.stderr
        assert str(store.query_endpoint) in query.stderr
        assert sorted(json.loads(query.stdout)["rows"]) == [
            ["a", "done"],
            ["b", "done"],
            ["c", "seen"],
        ]
        refused = run_cli("query", str(session), "DROP TABLE ctf", cwd=tmp_path)
        assert refused.returncode == 2 and "DROP" in refused.stderr
        summary = run_cli("summary", str(session), "--json", cwd=tmp_path)
        assert summary.returncode == 0, summary.stderr
        assert json.loads(summary.stdout)["pending"] == 1
        assert store.counts()["seen"] == 3


def test_a_running_session_without_a_query_endpoint(session: Path, tmp_path: Path) -> None:
    with SessionStore(session):
        result = run_cli("summary", str(session), cwd=tmp_path)
    assert result.returncode == 2
    assert "Cannot open the session database" in result.stderr
    assert "answers no queries" in result.stderr
