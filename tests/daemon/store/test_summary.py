"""The session summary against numbers worked out by hand."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from causalscope.daemon.store import SessionReader, SessionStore, summarize
from causalscope.daemon.store import writer as store_module
from tests.daemon.store._records import fail_flag, make_record, warn_flag

T0 = dt.datetime(2024, 5, 1, 12, 0, 0)


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four done exposures committed at 0, 10, 30 and 60 minutes; one pending; quarantines."""
    clock = iter(T0 + dt.timedelta(seconds=s) for s in range(0, 100_000, 1))
    commit_times = iter(T0 + dt.timedelta(minutes=m) for m in (0, 10, 30, 60))
    path = tmp_path / "S.duckdb"
    with SessionStore(path) as store:
        monkeypatch.setattr(store_module, "_now", lambda: next(clock))
        store.start_run(settings_json="{}", version="0.1.0", command_line=[], params_hash="p")
        # Mean defocus (U + V) / 2 = 1.0, 1.5, 2.0, 3.0 um; the failed one has no fit resolution.
        done = [
            ("a", "pass", 10_000.0, 4.0, 30.0, 2.0, 1.0, []),
            ("b", "warn", 15_000.0, 5.0, 50.0, 4.0, 2.0, [warn_flag("thick_ice")]),
            ("c", "pass", 20_000.0, 3.0, None, 6.0, 3.0, []),
            (
                "d",
                "fail",
                30_000.0,
                None,
                90.0,
                100.0,
                40.0,
                [fail_flag("ctf_resolution_poor"), fail_flag("drift"), warn_flag("thick_ice")],
            ),
        ]
        for eid, status, defocus, resolution, ice, latency, drift, flags in done:
            store.record_seen(eid, movie_path=f"movies/{eid}.tiff", source="watcher")
            record = make_record(
                eid,
                status=status,  # type: ignore[arg-type]
                defocus_u_angstrom=defocus + 500.0,
                defocus_v_angstrom=defocus - 500.0,
                fit_resolution_angstrom=resolution,
                ice_thickness_nm=ice,
                total_drift_px=drift,
                flags=flags,
            )
            when = next(commit_times)
            monkeypatch.setattr(store_module, "_now", lambda when=when: when)
            store.commit_exposure(record, params_hash="p", latency_s=latency)
            monkeypatch.setattr(store_module, "_now", lambda: next(clock))
        store.record_seen("e", movie_path="movies/e.tiff", source="watcher")
        store.record_seen("f", movie_path="movies/f.tiff", source="watcher")
        store.quarantine(exposure_id="f", origin="movies/f.tiff", code="truncated", reason="x")
        for _ in range(2):
            store.quarantine(exposure_id=None, origin="tcp://d:1", code="garbage", reason="?")
    return path


def test_summary_numbers(session: Path) -> None:
    with duckdb.connect(str(session), read_only=True) as con:
        summary = summarize(con)
    assert (summary.session, summary.runs) == ("S", 1)
    assert (summary.seen, summary.done, summary.pending, summary.quarantined) == (6, 4, 1, 1)
    assert (summary.passed, summary.warned, summary.failed) == (2, 1, 1)
    assert summary.quarantine_records == 3
    # 3 intervals in one hour.
    assert summary.rate_per_hour == pytest.approx(3.0)
    # Latencies 2, 4, 6, 100 s.
    assert summary.median_latency_s == pytest.approx(5.0)
    # Defocus 1.0, 1.5, 2.0, 3.0 um: p10 at rank 0.3 -> 1.15; p90 at rank 2.7 -> 2.7.
    d = summary.defocus_um
    assert (d.n, d.min, d.max) == (4, pytest.approx(1.0), pytest.approx(3.0))
    assert (d.p10, d.median, d.p90) == (
        pytest.approx(1.15),
        pytest.approx(1.75),
        pytest.approx(2.7),
    )
    # Fit resolution 3, 4, 5 A (the failed exposure had none): p10 at rank 0.2 -> 3.2.
    r = summary.fit_resolution_angstrom
    assert (r.n, r.min, r.p10, r.median, r.p90, r.max) == (
        3,
        3.0,
        pytest.approx(3.2),
        4.0,
        pytest.approx(4.8),
        5.0,
    )
    # Ice 30, 50, 90 nm (one had no estimate).
    ice = summary.ice_thickness_nm
    assert (ice.n, ice.median, ice.p90) == (3, 50.0, pytest.approx(82.0))
    drift = summary.total_drift_px
    assert (drift.n, drift.min, drift.max, drift.median) == (4, 1.0, 40.0, pytest.approx(2.5))
    assert summary.failures == (("ctf_resolution_poor", 1), ("drift", 1))
    assert summary.warnings == (("thick_ice", 2),)
    assert summary.quarantine_reasons == (("garbage", 2), ("truncated", 1))


def test_describe_and_to_dict(session: Path) -> None:
    with duckdb.connect(str(session), read_only=True) as con:
        summary = summarize(con)
    text = summary.describe()
    assert "seen 6   done 4   pending 1   quarantined 1" in text
    assert "pass 2 (50%)   warn 1 (25%)   fail 1 (25%)" in text
    assert "3.0 exposures/h; median latency 5.00 s" in text
    assert "failures    ctf_resolution_poor 1, drift 1" in text
    assert "quarantine  garbage 2, truncated 1" in text
    table = [line for line in text.splitlines() if line.startswith(("defocus", "CTF", "total"))]
    assert len(table) == 3
    assert len({len(line) for line in table}) == 1  # aligned columns
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["defocus_um"]["median"] == pytest.approx(1.75)
    assert data["failures"] == {"ctf_resolution_poor": 1, "drift": 1}


def test_same_summary_through_the_endpoint(session: Path) -> None:
    with duckdb.connect(str(session), read_only=True) as con:
        local = summarize(con)
    with SessionStore(session, query_address="tcp://127.0.0.1:0"), SessionReader(session) as reader:
        assert reader.via_endpoint is not None
        assert summarize(reader) == local


def test_an_empty_session(tmp_path: Path) -> None:
    SessionStore(tmp_path / "E.duckdb").close()
    with duckdb.connect(str(tmp_path / "E.duckdb"), read_only=True) as con:
        summary = summarize(con)
    assert (summary.seen, summary.done, summary.rate_per_hour, summary.median_latency_s) == (
        0,
        0,
        None,
        None,
    )
    assert summary.defocus_um.n == 0 and summary.defocus_um.median is None
    assert "none" in summary.describe()
