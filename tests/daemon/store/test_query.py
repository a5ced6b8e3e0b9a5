"""The query endpoint: answers one SELECT, refuses everything else, and reports a dead thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from causalscope.daemon.store import (
    QueryError,
    SessionReader,
    SessionStore,
    StoreError,
    check_select,
    endpoints_path,
    query_endpoint,
    read_endpoints,
)
from tests.daemon.store._records import make_record

LOCAL = "tcp://127.0.0.1:0"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SessionStore]:
    with SessionStore(tmp_path / "S.duckdb", publish_address=LOCAL, query_address=LOCAL) as opened:
        opened.record_seen("a", movie_path="movies/a.tiff", source="watcher")
        opened.commit_exposure(make_record("a"), params_hash="p", latency_s=2.0)
        opened.record_seen("b", movie_path="movies/b.tiff", source="watcher")
        yield opened


def _address(store: SessionStore) -> str:
    assert store.query_endpoint is not None
    return store.query_endpoint


def test_select_with_parameters(store: SessionStore) -> None:
    result = query_endpoint(
        _address(store),
        "SELECT exposure_id, state, seen_at, latency_s FROM exposures WHERE state = ? "
        "ORDER BY exposure_id",
        ["done"],
    )
    assert result.columns == ("exposure_id", "state", "seen_at", "latency_s")
    ((eid, state, seen_at, latency),) = result.rows
    assert (eid, state, latency) == ("a", "done", 2.0)
    assert isinstance(seen_at, str) and "T" in seen_at  # JSON-safe: ISO text
    assert not result.truncated
    joined = query_endpoint(
        _address(store),
        "SELECT c.defocus_angstrom, m.total_drift_px FROM ctf AS c JOIN motion AS m "
        "USING (exposure_id)",
    )
    assert joined.rows == ((14_500.0, 3.0),)


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("INSERT INTO labels VALUES (1, 'a', 'accept', now(), 'x')", "INSERT"),
        ("DROP TABLE ctf", "DROP"),
        ("COPY exposures TO 'stolen.csv'", "COPY"),
        ("ATTACH 'other.duckdb' AS other", "ATTACH"),
        ("UPDATE exposures SET state = 'done'", "UPDATE"),
        ("SELECT 1; DELETE FROM exposures", "2 statements"),
        ("PRAGMA enable_external_access", "PRAGMA"),
    ],
)
def test_anything_but_one_select_is_refused(store: SessionStore, sql: str, refused: str) -> None:
    with pytest.raises(QueryError, match=refused) as caught:
        query_endpoint(_address(store), sql)
    assert _address(store) in caught.value.message
    with pytest.raises(QueryError, match=refused):
        check_select(sql)
    assert store.counts()["seen"] == 2
    assert not (Path.cwd() / "stolen.csv").exists()


def test_a_select_cannot_read_other_files(store: SessionStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    with pytest.raises(QueryError, match="disabled by configuration"):
        query_endpoint(_address(store), f"SELECT * FROM read_csv('{secret}')")
    with pytest.raises(QueryError, match="Binder Error"):
        query_endpoint(_address(store), "SELECT no_such_column FROM exposures")


def test_bad_requests_get_errors_and_the_endpoint_keeps_answering(store: SessionStore) -> None:
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(_address(store))
    try:
        for request in (
            b"\xff not json",
            b'{"query": "SELECT 1"}',
            b'{"sql": "SELECT 1", "params": 3}',
        ):
            socket.send(request)
            assert socket.poll(5000, zmq.POLLIN)
            assert "error" in json.loads(socket.recv())
    finally:
        socket.close()
        context.term()
    assert query_endpoint(_address(store), "SELECT 1 AS one").rows == ((1,),)
    store.check()


def test_no_answer_is_a_clear_error(tmp_path: Path) -> None:
    context = zmq.Context()
    silent = context.socket(zmq.REP)  # receives, never answers
    silent.setsockopt(zmq.LINGER, 0)
    silent.bind(LOCAL)
    address = silent.getsockopt_string(zmq.LAST_ENDPOINT)
    try:
        with pytest.raises(StoreError, match=r"did not answer within 0\.2 s") as caught:
            query_endpoint(address, "SELECT 1", timeout_s=0.2)
        assert address in caught.value.message
    finally:
        silent.close()
        context.term()


def test_a_dead_query_thread_is_reported_to_the_owner(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(request: bytes) -> str:
        raise RuntimeError("simulated crash in the query thread")

    assert store._server is not None
    monkeypatch.setattr(store._server, "answer", explode)
    with pytest.raises(StoreError, match="did not answer"):
        query_endpoint(_address(store), "SELECT 1", timeout_s=0.5)
    with pytest.raises(StoreError, match="simulated crash"):
        store.check()


def test_endpoints_file_lives_while_the_store_is_open(tmp_path: Path) -> None:
    path = tmp_path / "S.duckdb"
    store = SessionStore(path, publish_address=LOCAL, query_address=LOCAL)
    written = read_endpoints(path)
    assert endpoints_path(path) == tmp_path / "S.endpoints.json"
    assert written is not None
    assert (written.publish, written.query) == (store.publish_endpoint, store.query_endpoint)
    assert written.pid > 0 and written.database == str(path)
    # In one process DuckDB refuses a second, read-only connection: the reader asks the endpoint.
    with SessionReader(path) as reader:
        assert reader.via_endpoint == store.query_endpoint
        assert reader.select("SELECT count(*) FROM exposures").rows == ((0,),)
    store.close()
    assert not endpoints_path(path).exists()
    with SessionReader(path) as reader:
        assert reader.via_endpoint is None
        assert reader.select("SELECT name FROM session").rows == (("S",),)


def test_the_same_address_twice_is_a_clear_error(store: SessionStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="Cannot bind the query endpoint"):
        SessionStore(tmp_path / "T.duckdb", query_address=_address(store))
    assert not (tmp_path / "T.endpoints.json").exists()


def test_a_request_bounds_its_rows_and_its_time(store: SessionStore) -> None:
    rows = query_endpoint(_address(store), "SELECT * FROM range(100)", max_rows=7)
    assert [r[0] for r in rows.rows] == list(range(7)) and rows.truncated
    with pytest.raises(QueryError, match=r"ran longer than 0\.3 s"):
        query_endpoint(
            _address(store), "SELECT count(*) FROM range(1000000000000)", time_limit_s=0.3
        )
    # the interrupted query left the endpoint and the store working
    assert query_endpoint(_address(store), "SELECT count(*) FROM exposures").rows == ((2,),)
    store.record_seen("c", movie_path="movies/c.tiff", source="watcher")
    with pytest.raises(QueryError, match="time_limit_s must be in"):
        query_endpoint(_address(store), "SELECT 1", time_limit_s=-1)
