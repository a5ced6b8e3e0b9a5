"""A version-1 session file, written by the code before the store was driven by table specs,
opens, migrates and answers as it did (golden outputs of that code); a newer one is refused.

``data/v1_session.duckdb.gz`` and its golden summary and history were made by the old code;
``data/make_v1_session.py`` says how.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from causalscope.daemon.client import views
from causalscope.daemon.store import SCHEMA_VERSION, SessionReader, SessionStore, StoreError, schema
from causalscope.daemon.store import summarize as summarize_session
from causalscope.daemon.store.tables import field
from causalscope.tui.source import RecordedSource
from tests.daemon.store._records import make_record

DATA = Path(__file__).parent / "data"
VIEW_NAMES = {v.name for v in views.VIEWS}


@pytest.fixture
def v1_file(tmp_path: Path) -> Path:
    path = tmp_path / "v1_session.duckdb"
    with gzip.open(DATA / "v1_session.duckdb.gz") as packed, path.open("wb") as out:
        shutil.copyfileobj(packed, out)
    return path


def _select(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def _versions(path: Path) -> list[int]:
    return [v for (v,) in _select(path, "SELECT version FROM schema_version ORDER BY version")]


def _views(path: Path) -> set[str]:
    return {n for (n,) in _select(path, "SELECT view_name FROM duckdb_views() WHERE NOT internal")}


def _summary(path: Path) -> dict[str, Any]:
    with SessionReader(path) as reader:
        summary = summarize_session(reader)
    assert summary.describe() + "\n" == (DATA / "v1_session.summary.txt").read_text()
    out = dict(json.loads(json.dumps(summary.to_dict())))
    assert out.pop("reconstruction") is None  # added with schema 3; none in a version-1 file
    assert out.pop("scores") is None  # added with schema 4
    return out


def _history(path: Path) -> dict[str, Any]:
    snapshot = RecordedSource.open(path).history()
    return dict(json.loads(json.dumps(dataclasses.asdict(snapshot), sort_keys=True)))


def _old_history() -> dict[str, Any]:
    """The old dashboard's history; its alerts lacked the event's ``run_id`` (the published
    alert had it), which the ``alerts`` view now gives both, and it knew nothing of the
    running reconstructions or the scores (a version 1 file has none)."""
    old = json.loads((DATA / "v1_session.history.json").read_text())
    old["alerts"] = [{**alert, "run_id": 1} for alert in old["alerts"]]
    old.update(evaluations=[], class_set=None, reconstruction=None, class_labels={}, scores={})
    return dict(old)


def test_the_fixture_is_a_version_1_file_without_views(v1_file: Path) -> None:
    assert _versions(v1_file) == [1]
    assert _views(v1_file) == set()
    assert v1_file.stat().st_size < 8_000_000


def test_read_only_a_version_1_file_answers_as_the_old_code(v1_file: Path) -> None:
    golden = json.loads((DATA / "v1_session.summary.json").read_text())
    assert golden["done"] == 4 and golden["causes"]  # the file holds what is compared
    assert _summary(v1_file) == golden
    assert _history(v1_file) == _old_history()
    # read-only: the views were temporary, the file is as it was
    assert _versions(v1_file) == [1]
    assert _views(v1_file) == set()


def test_a_store_migrates_a_version_1_file(v1_file: Path) -> None:
    golden = json.loads((DATA / "v1_session.summary.json").read_text())
    with SessionStore(v1_file) as store:
        assert store.migrated_from == 1
        assert store.counts()["done"] == 4
    assert _versions(v1_file) == [1, SCHEMA_VERSION]
    assert _views(v1_file) == VIEW_NAMES
    assert _summary(v1_file) == golden
    assert _history(v1_file) == _old_history()
    with SessionStore(v1_file) as store:  # migrated once
        assert store.migrated_from is None
    assert _versions(v1_file) == [1, SCHEMA_VERSION]


def test_a_migrated_file_takes_new_commits(v1_file: Path) -> None:
    with SessionStore(v1_file) as store:
        assert store.commit_exposure(make_record("new"), params_hash="h")
        row = store.exposure_row("new")
        assert row is not None and row["state"] == "done" and row["ctf"] is not None
        assert store.counts()["done"] == 5
    assert [r["exposure_id"] for r in _history(v1_file)["rows"]][-1] == "new"


def test_new_files_have_the_version_1_tables(v1_file: Path, tmp_path: Path) -> None:
    """The DDL generated from the table declarations is the one version 1 wrote by hand (for
    the tables, columns and sequences version 1 had; later versions added others, columns at
    a table's end)."""
    new = tmp_path / "new.duckdb"
    SessionStore(new).close()
    columns = (
        "SELECT table_name, column_name, ordinal_position, data_type, is_nullable, "
        "column_default FROM information_schema.columns "
        "JOIN information_schema.tables USING (table_schema, table_name) "
        "WHERE table_type = 'BASE TABLE' ORDER BY ALL"
    )
    constraints = (
        "SELECT table_name, constraint_type, constraint_column_names, expression "
        "FROM duckdb_constraints() ORDER BY ALL"
    )
    sequences = "SELECT sequence_name, increment_by, min_value FROM duckdb_sequences() ORDER BY ALL"
    for sql in (columns, constraints, sequences):
        old_rows = _select(v1_file, sql)
        assert old_rows, sql
        names = {row[:2] if sql is columns else row[0] for row in old_rows}
        key = (lambda row: row[:2]) if sql is columns else (lambda row: row[0])
        assert [row for row in _select(new, sql) if key(row) in names] == old_rows, sql


def test_a_newer_file_is_refused_and_left_alone(v1_file: Path) -> None:
    with duckdb.connect(str(v1_file)) as con:
        con.execute("UPDATE schema_version SET version = ?", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}; this causalscope"):
        SessionStore(v1_file)
    assert _versions(v1_file) == [SCHEMA_VERSION + 1]
    assert _views(v1_file) == set()  # the refused open changed nothing


def test_a_declared_column_reaches_older_files(
    v1_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a field is one declaration and a version step: an older file gets the column."""
    ctf = schema.CTF_TABLE
    grown = dataclasses.replace(
        ctf, columns=(*ctf.columns, field("drift_score", "DOUBLE NOT NULL"))
    )
    monkeypatch.setattr(
        schema, "TABLE_SPECS", tuple(grown if t is ctf else t for t in schema.TABLE_SPECS)
    )
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with SessionStore(v1_file) as store:
        assert store.migrated_from == 1
    assert _select(v1_file, "SELECT count(*), count(drift_score) FROM ctf") == [(4, 0)]
    assert _versions(v1_file) == [1, SCHEMA_VERSION + 1]
    assert grown.insert_sql(["exposure_id", "drift_score"]) == (
        "INSERT INTO ctf (exposure_id, drift_score) VALUES ($exposure_id, $drift_score)"
    )
