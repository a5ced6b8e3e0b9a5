"""The schema: created on open, every column documented, versioned."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from causalscope.daemon.client import views
from causalscope.daemon.store import (
    SCHEMA_VERSION,
    SessionStore,
    StoreError,
    evaluation,
    schema,
    scores,
)


def _columns(path: Path) -> dict[str, list[str]]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def test_every_table_and_column_exists_and_is_documented(tmp_path: Path) -> None:
    path = tmp_path / "S.duckdb"
    SessionStore(path).close()
    columns = _columns(path)
    assert sorted(columns) == sorted([*schema.TABLES, *schema.VIEW_NAMES])
    # the scores' and the running reconstructions' tables are documented beside their
    # declarations
    documentation = (schema.__doc__ or "") + (scores.__doc__ or "") + (evaluation.__doc__ or "")
    documented = set(re.findall(r"``([a-z0-9_]+)``", documentation))
    documented_views = set(re.findall(r"``([a-z0-9_]+)``", views.__doc__ or ""))
    assert set(schema.VIEW_NAMES) <= documented_views
    for table, names in columns.items():
        if table in schema.VIEW_NAMES:  # a view's columns are its tables' or its own docs'
            names = [n for n in names if n not in documented_views]
        assert table in documented, table
        undocumented = [n for n in names if n not in documented]
        assert not undocumented, f"{table}: {undocumented}"
    expected = {
        "exposures": {"exposure_id", "movie_path", "source", "state", "gate_status", "latency_s"},
        "motion": {"total_drift_px", "accumulated_motion_late_angstrom", "shifts_px"},
        "ctf": {"defocus_angstrom", "astigmatism_angstrom", "ice_thickness_nm", "supported"},
        "results": {"exposure_id", "stage", "params_hash", "record_json"},
        "labels": {"exposure_id", "label"},
    }
    for table, names in expected.items():
        assert names <= set(columns[table]), table


def test_version_and_session_rows_written_once(tmp_path: Path) -> None:
    path = tmp_path / "night_shift.duckdb"
    SessionStore(path).close()
    SessionStore(path).close()  # reopening adds nothing
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert con.execute("SELECT name FROM session").fetchall() == [("night_shift",)]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "S.duckdb"
    SessionStore(path).close()
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE schema_version SET version = ?", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match=f"S.duckdb has schema version {SCHEMA_VERSION + 1}"):
        SessionStore(path)
    assert not (tmp_path / "S.endpoints.json").exists()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "S.duckdb"
    path.write_text("not a database\n" * 100)
    with pytest.raises(StoreError, match=r"S\.duckdb"):
        SessionStore(path)
