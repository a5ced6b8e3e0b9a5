"""The 2D classes' Novelty and recommendation in the session: stored with the class set
(schema 5), published in the update's shape, in the summary, and added to an older file."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from causalscope.actors._evaluation_results import ClassRow, ClassSetUpdate, EvaluationUpdate
from causalscope.daemon.client.views import LATEST_CLASS_SET_SQL
from causalscope.daemon.client.wire import EvaluationUpdate as WireUpdate
from causalscope.daemon.store import SCHEMA_VERSION, SessionReader, SessionStore, summarize

_NEW = (
    "novelty",
    "nearest",
    "nearest_kind",
    "structure_distance",
    "junk_distance",
    "recommendation",
    "reason",
)


def _update(version: int) -> EvaluationUpdate:
    rows = (
        ClassRow(0, 40, 30.0, 12.0, 0.1, True, True, None, 0.2, "6z6u", "structure", 0.42, 0.7,
                 "accept", "like 6z6u (Novelty 0.24)"),
        ClassRow(1, 12, 9.0, None, 0.8, False, False, None, 0.9, "ice", "junk", 1.3, 0.31,
                 "reject", "nearest known entry is junk (junk 'ice' at 0.31)"),
        ClassRow(2, 20, 15.0, 20.0, 0.3, True, True, None, 0.95, "carbon", "junk", 1.4, 0.5,
                 "look", "the classifier keeps it but its nearest known entry is junk"),
        ClassRow(3, 0, 0.0, None, 1.0, False, False, None, None, None, None, None, None,
                 "reject", "no particles"),
    )  # fmt: skip
    class_set = ClassSetUpdate(4, 72, 60, 4.0, "a.mrcs", "a.png", "m.star", "s.star", rows)
    return EvaluationUpdate(version, 72, 3, 1.0, class_set, None, None)


def test_classes_keep_their_novelty_and_recommendation(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with SessionStore(path) as store:
        assert store.commit_evaluation(_update(1))
    with duckdb.connect(str(path), read_only=True) as con:
        stored = con.execute(
            f"SELECT class_index, {', '.join(_NEW)} FROM classes ORDER BY class_index"
        ).fetchall()
        published = con.execute(LATEST_CLASS_SET_SQL).fetchone()
    expected = [
        (row.class_index, *(getattr(row, name) for name in _NEW))
        for row in _update(1).class_set.classes  # type: ignore[union-attr]
    ]
    assert stored == expected
    assert published is not None
    update = WireUpdate.model_validate(
        {"version": 1, "particles": 72, "exposures": 3, "seconds": 1.0,
         "class_set": json.loads(published[1]), "map": None, "forecast": None}
    )  # fmt: skip
    assert update.class_set is not None and update.class_set.classes is not None
    got = update.class_set.classes
    assert [c.recommendation for c in got] == ["accept", "reject", "look", "reject"]
    assert got[1].nearest == "ice" and got[1].nearest_kind == "junk" and got[1].novelty == 0.9
    with SessionReader(path) as reader:
        summary = summarize(reader)
    text = summary.describe()
    assert "curation    accept 1   look 1   reject 2" in text
    assert "class   2 reject (12 particles): nearest known entry is junk" in text
    assert "class   4" not in text  # an empty class is counted, not listed
    assert summary.reconstruction is not None
    assert [c["recommendation"] for c in summary.reconstruction["classes"]][:2] == [
        "accept",
        "reject",
    ]


def test_an_older_file_gets_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with SessionStore(path) as store:
        assert store.commit_evaluation(_update(1))
    with duckdb.connect(str(path)) as con:  # as schema 4 wrote it
        con.execute("DROP VIEW IF EXISTS evaluation_updates")
        for name in _NEW:
            con.execute(f"ALTER TABLE classes DROP COLUMN {name}")
        con.execute("DELETE FROM schema_version WHERE version = ?", [SCHEMA_VERSION])
        con.execute("INSERT INTO schema_version VALUES (4, now())")
    with SessionReader(path) as reader:  # read-only: no curation, no error
        summary = summarize(reader)
    assert summary.reconstruction is not None and "classes" not in summary.reconstruction
    assert "curation" not in summary.describe()
    with SessionStore(path) as store:
        assert store.commit_evaluation(_update(2))
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT version, count(recommendation) FROM classes GROUP BY version ORDER BY 1"
        ).fetchall()
        versions = con.execute("SELECT max(version) FROM schema_version").fetchone()
    assert rows == [(1, 0), (2, 4)] and versions == (SCHEMA_VERSION,)
