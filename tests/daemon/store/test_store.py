"""The store's writes: seen before processed, idempotent commits, restarts, rollback on failure."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pytest

from causalscope.daemon.store import PendingExposure, SessionStore, StoreError
from tests.daemon.store._records import fail_flag, make_record, warn_flag

REPO = Path(__file__).resolve().parents[3]


def _rows(path_or_store: Path | SessionStore, sql: str, params: list[Any] | None = None) -> list:
    if isinstance(path_or_store, SessionStore):
        return path_or_store._con.execute(sql, params).fetchall()
    with duckdb.connect(str(path_or_store), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def _table_counts(store: SessionStore, exposure_id: str) -> dict[str, int]:
    return {
        table: _rows(store, f"SELECT count(*) FROM {table} WHERE exposure_id = ?", [exposure_id])[
            0
        ][0]
        for table in ("exposures", "motion", "ctf", "flags", "results")
    }


def test_record_seen_states(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "S.duckdb") as store:
        assert store.record_seen("a", movie_path="m/a.tiff", source="watcher") == "new"
        assert store.record_seen("a", movie_path="m/a.tiff", source="watcher") == "pending"
        assert store.record_seen("a", movie_path="other/a.tiff", source="stream") == "conflict"
        # The conflicting sighting recorded nothing.
        assert _rows(store, "SELECT movie_path, source FROM exposures") == [("m/a.tiff", "watcher")]
        store.commit_exposure(make_record("a"), params_hash="p1")
        assert store.record_seen("a", movie_path="m/a.tiff", source="watcher") == "done"
        assert store.record_seen("b", movie_path="m/b.tiff", source="stream") == "new"
        store.quarantine(exposure_id="b", origin="m/b.tiff", code="truncated", reason="short")
        assert store.record_seen("b", movie_path="m/b.tiff", source="stream") == "quarantined"
        with pytest.raises(ValueError, match="'ftp'"):
            store.record_seen("c", movie_path="m/c.tiff", source="ftp")


def test_commit_writes_every_table_and_is_idempotent(tmp_path: Path) -> None:
    record = make_record("a", status="warn", flags=[warn_flag("thick_ice"), fail_flag("x", 2, 1)])
    with SessionStore(tmp_path / "S.duckdb") as store:
        store.record_seen("a", movie_path=record.movie_path, source="watcher")
        assert not store.is_done("a", params_hash="p1")
        assert store.commit_exposure(record, params_hash="p1", latency_s=3.5, problems=["dup"])
        assert store.is_done("a", params_hash="p1")
        assert not store.is_done("a", params_hash="p2")
        assert not store.is_done("a", stage="picking", params_hash="p1")
        assert store.commit_exposure(record, params_hash="p1", latency_s=9.0) is False
        assert _table_counts(store, "a") == {
            "exposures": 1,
            "motion": 1,
            "ctf": 1,
            "flags": 2,
            "results": 1,
        }
        (exposure,) = _rows(
            store,
            "SELECT state, gate_status, latency_s, problems, outputs->>'aligned_sum', n_frames, "
            "done_at IS NOT NULL FROM exposures",
        )
        assert exposure == ("done", "warn", 3.5, '["dup"]', "out/micrographs/a.mrc", 4, True)
        (ctf,) = _rows(
            store,
            "SELECT defocus_angstrom, astigmatism_angstrom, fit_resolution_angstrom, "
            "ice_thickness_nm FROM ctf",
        )
        assert ctf == (14_500.0, 1_000.0, 4.0, 40.0)
        (motion,) = _rows(
            store, "SELECT total_drift_px, patches_x, patches_y, shifts_px FROM motion"
        )
        assert motion[:3] == (3.0, 5, 4)
        assert json.loads(motion[3]) == record.motion.shifts_px  # type: ignore[union-attr]
        flags = _rows(
            store, "SELECT position, code, severity, value, limit_value FROM flags ORDER BY 1"
        )
        assert flags == [(0, "thick_ice", "warn", None, None), (1, "x", "fail", 2.0, 1.0)]
        (stored,) = _rows(store, "SELECT record_json FROM results")
        assert json.loads(stored[0]) == json.loads(record.model_dump_json())


def test_new_params_hash_adds_a_result_and_replaces_the_current_rows(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "S.duckdb") as store:
        store.record_seen("a", movie_path="movies/a.tiff", source="watcher")
        store.commit_exposure(make_record("a", flags=[warn_flag("w1")]), params_hash="p1")
        again = make_record("a", status="fail", defocus_u_angstrom=30_000.0, flags=[])
        assert store.commit_exposure(again, params_hash="p2")
        assert _table_counts(store, "a") == {
            "exposures": 1,
            "motion": 1,
            "ctf": 1,
            "flags": 0,
            "results": 2,
        }
        assert _rows(store, "SELECT params_hash FROM results ORDER BY 1") == [("p1",), ("p2",)]
        assert _rows(store, "SELECT defocus_u_angstrom FROM ctf") == [(30_000.0,)]
        assert _rows(store, "SELECT gate_status FROM exposures") == [("fail",)]


def test_commit_of_an_exposure_never_seen_and_without_ctf(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "S.duckdb") as store:
        assert store.commit_exposure(make_record("z", with_ctf=False), params_hash="p")
        assert _table_counts(store, "z")["ctf"] == 0
        assert _rows(store, "SELECT state, source, movie_path FROM exposures") == [
            ("done", None, "movies/z.tiff")
        ]


def test_pending_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "S.duckdb"
    with SessionStore(path) as store:
        run = store.start_run(
            settings_json='{"a": 1}', version="0.1.0", command_line=["run", "x"], params_hash="p"
        )
        assert run == 1
        store.record_seen("a", movie_path="m/a.tiff", source="watcher", metadata_path="m/a.xml")
        store.record_seen("b", movie_path="m/b.mrc", source="stream")
        store.record_seen("c", movie_path="m/c.tiff", source="watcher")
        store.commit_exposure(make_record("b"), params_hash="p")
        store.quarantine(exposure_id="c", origin="m/c.tiff", code="unreadable_file", reason="x")
        assert store.mark_attempt("a") == 1
        assert store.pending() == [
            PendingExposure("a", Path("m/a.tiff"), "watcher", Path("m/a.xml"))
        ]
    # The restart: a new store on the same file finds everything as it was left.
    with SessionStore(path) as store:
        assert (
            store.start_run(settings_json="{}", version="0.1.0", command_line=[], params_hash="p")
            == 2
        )
        assert [p.exposure_id for p in store.pending()] == ["a"]
        assert store.is_done("b", params_hash="p")
        assert store.record_seen("a", movie_path="m/a.tiff", source="watcher") == "pending"
        assert store.record_seen("b", movie_path="m/b.mrc", source="stream") == "done"
        assert store.mark_attempt("a") == 2
        assert store.commit_exposure(make_record("b"), params_hash="p") is False
        store.commit_exposure(make_record("a"), params_hash="p")
        assert store.pending() == []
        assert _rows(store, "SELECT run_id FROM results ORDER BY exposure_id") == [(2,), (1,)]
        runs = _rows(store, "SELECT run_id, command_line, settings_json FROM runs ORDER BY 1")
        assert runs[0] == (1, '["run", "x"]', '{"a": 1}')


def test_quarantine_log_labels_and_counts(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "S.duckdb") as store:
        store.record_seen("a", movie_path="m/a.tiff", source="watcher")
        store.record_seen("b", movie_path="m/b.tiff", source="watcher")
        store.commit_exposure(make_record("a"), params_hash="p")
        store.quarantine(exposure_id=None, origin="tcp://x:1", code="garbage_message", reason="?")
        store.quarantine(exposure_id="b", origin="m/b.tiff", code="truncated", reason="short")
        # A second movie claiming a done exposure's id does not undo that exposure.
        store.quarantine(exposure_id="a", origin="n/a.tiff", code="duplicate_id", reason="dup")
        assert _rows(store, "SELECT exposure_id, state FROM exposures ORDER BY 1") == [
            ("a", "done"),
            ("b", "quarantined"),
        ]
        assert _rows(store, "SELECT exposure_id, code FROM quarantine ORDER BY id") == [
            (None, "garbage_message"),
            ("b", "truncated"),
            ("a", "duplicate_id"),
        ]
        store.log_event("retry", "worker crashed", exposure_id="b", attempt=2)
        assert _rows(store, "SELECT kind, message, data->>'attempt' FROM events") == [
            ("retry", "worker crashed", "2")
        ]
        store.add_label("a", "reject", by="alice")
        assert _rows(store, "SELECT exposure_id, label, labelled_by FROM labels") == [
            ("a", "reject", "alice")
        ]
        with pytest.raises(ValueError, match="'maybe'"):
            store.add_label("a", "maybe")
        with pytest.raises(ValueError, match="'nope'"):
            store.mark_attempt("nope")
        assert store.counts() == {
            "seen": 2,
            "pending": 0,
            "done": 1,
            "quarantined": 1,
            "pass": 1,
            "warn": 0,
            "fail": 0,
            "quarantine_records": 3,
            "results": 1,
            "events": 1,
        }


class _FailingConnection:
    """Delegates to a DuckDB connection, but a statement containing ``needle`` raises."""

    def __init__(self, real: duckdb.DuckDBPyConnection, needle: str) -> None:
        self._real = real
        self._needle = needle

    def execute(self, sql: str, params: Any = None) -> Any:
        if self._needle in sql:
            raise duckdb.IOException('Could not write file "S.duckdb.wal": No space left on device')
        return self._real.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_failure_midway_rolls_back_and_a_retry_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "S.duckdb"
    record = make_record("a", flags=[warn_flag("w")])
    with SessionStore(path, ctf_star_path=tmp_path / "micrographs_ctf.star") as store:
        store.record_seen("a", movie_path=record.movie_path, source="watcher")
        real = store._con
        # Exposure and motion rows are written before the ctf insert fails.
        monkeypatch.setattr(store, "_con", _FailingConnection(real, "INSERT INTO ctf"))
        with pytest.raises(StoreError) as caught:
            store.commit_exposure(record, params_hash="p")
        assert "S.duckdb" in caught.value.message
        assert "No space left on device" in caught.value.message
        assert "rolled back" in caught.value.message
        monkeypatch.setattr(store, "_con", real)
        assert _table_counts(store, "a") == {
            "exposures": 1,
            "motion": 0,
            "ctf": 0,
            "flags": 0,
            "results": 0,
        }
        assert _rows(store, "SELECT state FROM exposures") == [("seen",)]
        assert not (tmp_path / "micrographs_ctf.star").exists()
        assert store.commit_exposure(record, params_hash="p")
        assert _table_counts(store, "a")["results"] == 1


_DISK_FULL = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    from pathlib import Path
    from causalscope.daemon.store import SessionStore, StoreError
    from tests.daemon.store._records import make_record

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, like ENOSPC
    path = Path(sys.argv[1])
    store = SessionStore(path)
    store.commit_exposure(make_record("warmup"), params_hash="p")
    store._con.execute("CHECKPOINT")
    limit = os.path.getsize(path) + 400_000
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    committed, error = [], None
    for i in range(100):
        eid = f"e{i:03d}"
        store.record_seen(eid, movie_path=f"movies/{eid}.tiff", source="watcher")
        try:
            store.commit_exposure(make_record(eid, n_frames=2000), params_hash="p")
        except StoreError as exc:
            error = exc.message
            break
        committed.append(eid)
    unlimited = resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_FSIZE, (unlimited, unlimited))
    retried = store.commit_exposure(make_record(eid, n_frames=2000), params_hash="p")
    store.close()
    print(json.dumps({"committed": committed, "failed": eid, "error": error, "retried": retried}))
    """
)


def test_a_full_disk_raises_store_error_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "S.duckdb"
    result = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["error"] is not None, "the file size limit was never reached"
    assert str(path) in report["error"]
    assert "File too large" in report["error"]
    assert report["retried"] is True
    # After the restart every done exposure is complete, and the failed one was committed once.
    done = {r[0] for r in _rows(path, "SELECT exposure_id FROM exposures WHERE state = 'done'")}
    assert done == {"warmup", *report["committed"], report["failed"]}
    for table in ("motion", "ctf", "results"):
        ids = [r[0] for r in _rows(path, f"SELECT exposure_id FROM {table}")]
        assert sorted(ids) == sorted(done), table


def test_one_store_per_session_file(tmp_path: Path) -> None:
    path = tmp_path / "S.duckdb"
    with SessionStore(path) as store:
        with pytest.raises(StoreError, match="already open in this process"):
            SessionStore(tmp_path / "." / "S.duckdb")
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from daemon.store import SessionStore\n"
                "try:\n    SessionStore(Path(sys.argv[1]))\n"
                "except Exception as e:\n    print(type(e).__name__, e.message)",
                str(path),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert other.stdout.startswith("StoreError"), other.stderr
        assert str(path) in other.stdout and "lock" in other.stdout
        assert store.record_seen("a", movie_path="a.tiff", source="watcher") == "new"
    with SessionStore(path) as store:  # closed, so free again
        assert store.counts()["seen"] == 1
    with pytest.raises(StoreError, match="after close"):
        store.counts()


def test_picks_are_stored_published_and_summarised(tmp_path: Path) -> None:
    from causalscope.daemon.store import summarize
    from causalscope.models.records import PickingRecord

    picking = PickingRecord(
        n_particles=3,
        particle_diameter_angstrom=120.0,
        mean_score=1.5,
        box_px=180,
        picks_xy_px=[[10.0, 20.0], [30.5, 40.0], [50.0, 60.25]],
        scores=[1.0, 1.5, 2.0],
    )
    record = make_record("a").model_copy(update={"picking": picking})
    path = tmp_path / "s.duckdb"
    with SessionStore(path) as store:
        store.record_seen("a", movie_path="a.tiff", source="watcher")
        assert store.commit_exposure(record, params_hash="h")
        row = store.exposure_row("a")
        assert row is not None and row["picking"]["n_particles"] == 3
        assert "exposure_id" not in row["picking"]
        # a commit under new parameters replaces the picks, it does not add to them
        fewer = picking.model_copy(
            update={"n_particles": 1, "picks_xy_px": [[1.0, 2.0]], "scores": [3.0]}
        )
        store.commit_exposure(record.model_copy(update={"picking": fewer}), params_hash="h2")
    with duckdb.connect(str(path), read_only=True) as db:
        assert db.execute("SELECT x_px, y_px, score FROM picks").fetchall() == [(1.0, 2.0, 3.0)]
        assert db.execute("SELECT n_particles FROM picking").fetchall() == [(1,)]
        summary = summarize(db)
    assert summary.particles_per_exposure.n == 1 and summary.particles_per_exposure.median == 1
