"""Read-only queries of a session: the SELECT check, the store's query endpoint and its client.

The endpoint is a ZeroMQ REP socket served by a thread of the store. A request is JSON
``{"sql": "SELECT ...", "params": [...]}``; the answer is ``{"columns": [...], "rows": [[...]],
"truncated": false}`` or ``{"error": "..."}``. Only a single statement of type SELECT is run
(``DESCRIBE``, ``SHOW`` and ``SUMMARIZE`` are SELECTs too), inside a read-only transaction, on a
connection whose file system access is switched off: a query can neither change the session
nor read or write other files.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import zmq

from causalscope.daemon.store._json import dumps, jsonable
from causalscope.daemon.store.errors import QueryError, StoreError

__all__ = ["MAX_ROWS", "QueryResult", "QueryServer", "check_select", "query_endpoint", "run_select"]

#: Rows returned at most by one query; more are cut off and ``truncated`` is set.
MAX_ROWS = 100_000

_POLL_MS = 100


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query, JSON-safe (times as ISO text, NaN as None).

    Attributes
    ----------
    columns
        Column names, in order.
    rows
        One tuple per row.
    truncated
        True when more than :data:`MAX_ROWS` rows matched and the rest were left out.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form sent by the endpoint."""
        return {
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
            "truncated": self.truncated,
        }


def check_select(sql: str) -> str:
    """``sql`` if it is exactly one SELECT statement; QueryError naming what was refused."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError("Query refused", f"cannot parse {sql!r}: {exc}") from exc
    if len(statements) != 1:
        raise QueryError(
            "Query refused",
            f"only a single SELECT statement is allowed; got {len(statements)} statements "
            f"in {sql!r}",
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(
            "Query refused",
            f"only a single SELECT statement is allowed (read-only); refused {kind.name}: {sql!r}",
        )
    return sql


def run_select(
    connection: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | None = None,
    *,
    max_rows: int = MAX_ROWS,
) -> QueryResult:
    """Check and run ``sql`` in a read-only transaction on ``connection``.

    Raises QueryError for a refused statement or one DuckDB rejects.
    """
    check_select(sql)
    try:
        connection.execute("BEGIN TRANSACTION READ ONLY")
        try:
            cursor = connection.execute(sql, list(params) if params else None)
            columns = tuple(d[0] for d in cursor.description or ())
            fetched = cursor.fetchmany(max_rows + 1)
        finally:
            connection.execute("ROLLBACK")
    except duckdb.Error as exc:
        raise QueryError("Query failed", f"{sql!r}: {exc}") from exc
    truncated = len(fetched) > max_rows
    rows = tuple(tuple(jsonable(v) for v in row) for row in fetched[:max_rows])
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


class QueryServer:
    """A thread answering read-only queries on a REP socket; owned by the store.

    Parameters
    ----------
    socket
        A bound REP socket; the thread takes it over and closes it when it stops.
    cursor
        A cursor of the store's connection (DuckDB connections are not shared across threads;
        a cursor is the per-thread handle).
    name
        Names the thread (the database file) in errors.
    """

    def __init__(self, socket: zmq.Socket, cursor: duckdb.DuckDBPyConnection, name: str) -> None:
        self._socket = socket
        self._cursor = cursor
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.answered = 0
        self._thread = threading.Thread(target=self._serve, name=f"query:{name}", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise, in the owner's thread, the exception that stopped the serving thread."""
        if self._error is not None:
            raise StoreError(
                "Query endpoint stopped", f"the query thread failed: {self._error!r}"
            ) from self._error

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and wait for it; a query still running is interrupted."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._cursor.interrupt()
            self._thread.join(timeout_s)

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._socket.poll(_POLL_MS, zmq.POLLIN):
                    continue
                request = self._socket.recv()
                self._socket.send(self.answer(request).encode())
                self.answered += 1
        except BaseException as exc:  # reported to the owner by check()
            self._error = exc
        finally:
            self._socket.close(linger=0)
            self._cursor.close()

    def answer(self, request: bytes) -> str:
        """The JSON reply to one request; errors become ``{"error": ...}``."""
        try:
            message = json.loads(request)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return json.dumps({"error": f"request is not JSON: {exc}"})
        if not isinstance(message, dict) or not isinstance(message.get("sql"), str):
            return json.dumps({"error": 'request must be {"sql": "SELECT ...", "params": [...]}'})
        params = message.get("params")
        if params is not None and not isinstance(params, list):
            return json.dumps({"error": f"params must be a list, got {type(params).__name__}"})
        try:
            result = run_select(self._cursor, message["sql"], params)
        except QueryError as exc:
            return json.dumps({"error": exc.message, "title": exc.title})
        return dumps(result.to_dict())


def query_endpoint(
    address: str, sql: str, params: Sequence[Any] | None = None, timeout_s: float = 5.0
) -> QueryResult:
    """Ask a running session's query endpoint at ``address``.

    Raises StoreError when no answer comes within ``timeout_s`` seconds, QueryError when the
    endpoint refuses or fails the query.
    """
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(address)
        socket.send(json.dumps({"sql": sql, "params": list(params or [])}).encode())
        if not socket.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise StoreError(
                "Query endpoint not answering",
                f"{address} did not answer within {timeout_s:g} s (is the session running?)",
            )
        reply = json.loads(socket.recv())
    except zmq.ZMQError as exc:
        raise StoreError("Query endpoint unreachable", f"{address}: {exc}") from exc
    finally:
        socket.close(linger=0)
        context.term()
    if "error" in reply:
        title = str(reply.get("title", "Query failed"))
        raise QueryError(title, f"{address}: {reply['error']}")
    return QueryResult(
        columns=tuple(reply["columns"]),
        rows=tuple(tuple(r) for r in reply["rows"]),
        truncated=bool(reply.get("truncated", False)),
    )
