"""The store's query endpoint: a thread answering read-only queries of the running session.

The endpoint is a ZeroMQ REP socket served by a thread of the store; requests and replies are
those of :mod:`causalscope.daemon.client.query` (the client). Only a single statement of type
SELECT is run (``DESCRIBE``, ``SHOW`` and ``SUMMARIZE`` are SELECTs too), inside a read-only
transaction, on a connection whose file system access is switched off: a query can neither
change the session nor read or write other files.
"""

from __future__ import annotations

import json
import threading

import duckdb
import zmq

from causalscope.daemon.client._json import dumps
from causalscope.daemon.client.errors import QueryError, StoreError
from causalscope.daemon.client.local import MAX_ROWS, run_select

__all__ = ["QueryServer"]

_POLL_MS = 100
#: The longest time limit a request may ask for (a query holds up the others while it runs).
_MAX_TIME_S = 60.0


class QueryServer:
    """A thread answering read-only queries on a bound REP socket; owned by the store.

    Parameters
    ----------
    context
        The store's ZeroMQ context.
    address
        Where to bind, e.g. ``tcp://127.0.0.1:5557`` (port 0: any free port; see
        :attr:`endpoint`).
    cursor
        A cursor of the store's connection (DuckDB connections are not shared across threads;
        a cursor is the per-thread handle); the thread closes it when it stops.
    name
        Names the thread (the database file) in errors.

    Raises
    ------
    StoreError
        The address cannot be bound.
    """

    def __init__(
        self, context: zmq.Context, address: str, cursor: duckdb.DuckDBPyConnection, name: str
    ) -> None:
        socket = context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.bind(address)
        except zmq.ZMQError as exc:
            socket.close()
            cursor.close()
            raise StoreError(
                "Cannot bind the query endpoint", f"{address}: {exc} (is another session on it?)"
            ) from exc
        #: The bound address (the real port when 0 was asked for).
        self.endpoint: str = socket.getsockopt_string(zmq.LAST_ENDPOINT)
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
        max_rows, time_limit_s = message.get("max_rows", MAX_ROWS), message.get("time_limit_s")
        if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 0:
            return json.dumps({"error": f"max_rows must be a whole number >= 0, got {max_rows!r}"})
        if time_limit_s is not None and (
            not isinstance(time_limit_s, int | float) or not 0 < time_limit_s <= _MAX_TIME_S
        ):
            return json.dumps(
                {"error": f"time_limit_s must be in (0, {_MAX_TIME_S:g}], got {time_limit_s!r}"}
            )
        try:
            result = run_select(
                self._cursor,
                message["sql"],
                params,
                max_rows=min(max_rows, MAX_ROWS),
                time_limit_s=time_limit_s,
            )
        except QueryError as exc:
            return json.dumps({"error": exc.message, "title": exc.title})
        return dumps(result.to_dict())
