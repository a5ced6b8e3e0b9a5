"""Asking a running session's query endpoint: the request, the reply and the client.

The endpoint (served by the store, :mod:`causalscope.daemon.store.query_server`) is a ZeroMQ
REP socket. A request is JSON ``{"sql": "SELECT ...", "params": [...]}`` (optionally with
``max_rows`` and ``time_limit_s``); the reply is
``{"columns": [...], "rows": [[...]], "truncated": false}`` or ``{"error": "...", "title":
"..."}``. Only a single SELECT is answered, read-only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from causalscope.daemon.client.errors import QueryError, StoreError

__all__ = ["QueryResult", "Selectable", "query_endpoint"]


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
        True when more rows matched than the endpoint returns at most, and the rest were left
        out.
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

    def dicts(self) -> list[dict[str, Any]]:
        """One ``{column: value}`` per row."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Selectable(Protocol):
    """Anything that runs a SELECT and returns its rows (a session's file or its endpoint)."""

    def select(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult: ...


def query_endpoint(
    address: str,
    sql: str,
    params: Sequence[Any] | None = None,
    timeout_s: float = 5.0,
    *,
    max_rows: int | None = None,
    time_limit_s: float | None = None,
) -> QueryResult:
    """Ask a running session's query endpoint at ``address``.

    ``max_rows`` and ``time_limit_s`` bound the rows returned and the time the query may run
    there (the endpoint's own bounds apply as well).

    Raises StoreError when no answer comes within ``timeout_s`` seconds, QueryError when the
    endpoint refuses or fails the query.
    """
    import zmq

    # the process's one context: a context per query would start (and stop) an I/O thread
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(address)
        request: dict[str, Any] = {"sql": sql, "params": list(params or [])}
        if max_rows is not None:
            request["max_rows"] = max_rows
        if time_limit_s is not None:
            request["time_limit_s"] = time_limit_s
        socket.send(json.dumps(request).encode())
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
    if "error" in reply:
        title = str(reply.get("title", "Query failed"))
        raise QueryError(title, f"{address}: {reply['error']}")
    return QueryResult(
        columns=tuple(reply["columns"]),
        rows=tuple(tuple(r) for r in reply["rows"]),
        truncated=bool(reply.get("truncated", False)),
    )
