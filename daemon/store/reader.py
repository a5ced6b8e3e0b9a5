"""Read-only access to a session: its file, or the running daemon's query endpoint.

DuckDB lets one process write a file and no other process open it meanwhile, not even
read-only. A reader therefore opens the file read-only when it can; when the daemon holds it,
it finds the daemon's query endpoint in ``SESSION.endpoints.json`` and asks there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from causalscope.daemon.client.endpoints import Endpoints, endpoints_path, read_endpoints
from causalscope.daemon.client.errors import QueryError, StoreError
from causalscope.daemon.client.local import check_select, open_session_file, run_select
from causalscope.daemon.client.query import QueryResult, query_endpoint

__all__ = ["SessionReader"]


class SessionReader:
    """Run SELECTs on a session, locally or through its query endpoint.

    Parameters
    ----------
    path
        The session's database file.
    timeout_s
        How long to wait for the endpoint's answer.

    Raises
    ------
    InputError
        ``path`` does not exist.
    StoreError
        The file cannot be opened and no running session's endpoint answers for it.
    """

    def __init__(self, path: Path, *, timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self._timeout_s = timeout_s
        self._connection: duckdb.DuckDBPyConnection | None = None
        #: The running session's endpoints when the file is held by it, else None.
        self.endpoints: Endpoints | None = None
        try:
            self._connection = open_session_file(self.path)
        except StoreError as exc:
            endpoints = read_endpoints(self.path)
            if endpoints is None or endpoints.query is None:
                held = (
                    ""
                    if endpoints is None
                    else f"; it is held by process {endpoints.pid}, which answers no queries"
                )
                raise StoreError(
                    "Cannot open the session database",
                    f"{exc.message}{held} (no query endpoint in {endpoints_path(self.path).name})",
                    path=self.path,
                ) from exc
            self.endpoints = endpoints

    @property
    def via_endpoint(self) -> str | None:
        """The query endpoint used instead of the file, or None when the file is open."""
        return None if self.endpoints is None else self.endpoints.query

    @property
    def note(self) -> str | None:
        """A line for stderr when a running session's endpoint answers instead of the file."""
        if self.endpoints is None:
            return None
        return (
            f"{self.path} is held by a running session (process {self.endpoints.pid}); "
            f"asking its query endpoint {self.endpoints.query}"
        )

    def select(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        """Run one SELECT; QueryError when it is anything else or fails."""
        try:
            check_select(sql)
            if self._connection is not None:
                return run_select(self._connection, sql, params)
        except QueryError as exc:
            raise QueryError(exc.title, f"{self.path}: {exc.message}", path=self.path) from exc
        assert self.endpoints is not None and self.endpoints.query is not None
        return query_endpoint(self.endpoints.query, sql, params, timeout_s=self._timeout_s)

    def close(self) -> None:
        """Close the file, if it was opened."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
