"""A session's DuckDB file read in this process: the only part of the client that needs DuckDB.

DuckDB lets one process write a file and no other process open it meanwhile; after the session
anyone opens it read-only (:func:`open_session_file`). :func:`run_select` is the one read-only
SELECT, run on such a file and by the running store's query endpoint alike. A file written
before the schema had its views (:mod:`causalscope.daemon.client.views`) gets them as temporary
views, so that every reader selects the same shapes from every file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from causalscope.daemon.client.errors import QueryError, StoreError
from causalscope.daemon.client.query import QueryResult
from causalscope.daemon.client.views import VIEWS
from causalscope.models.errors import InputError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "MAX_ROWS",
    "add_missing_views",
    "check_select",
    "open_session_file",
    "run_select",
]

#: Rows returned at most by one query; more are cut off and ``truncated`` is set.
MAX_ROWS = 100_000


def open_session_file(path: Path, *, hint: str = "") -> duckdb.DuckDBPyConnection:
    """``path`` opened read-only, with file access switched off and the views in place.

    Raises
    ------
    InputError
        ``path`` does not exist.
    StoreError
        It is not a DuckDB file, or a running daemon holds it (``hint`` is added to the
        message then).
    """
    import duckdb

    path = Path(path)
    if not path.is_file():
        raise InputError("Session not found", f"{path} does not exist or is not a file", path=path)
    try:
        # No SELECT can read or write other files.
        con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
    except duckdb.Error as exc:
        raise StoreError(
            "Cannot open the session database", f"{path}: {exc}{hint}", path=path
        ) from exc
    try:
        add_missing_views(con)
    except duckdb.Error as exc:
        con.close()
        raise StoreError("Cannot read the session database", f"{path}: {exc}", path=path) from exc
    return con


def add_missing_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create, as temporary views, the views a file lacks whose tables it has; their names."""
    known = {
        str(name)
        for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    added = []
    for view in VIEWS:
        if view.name not in known and all(t in known for t in view.tables):
            con.execute(view.ddl(temporary=True))
            known.add(view.name)
            added.append(view.name)
    return added


def check_select(sql: str) -> str:
    """``sql`` if it is exactly one SELECT statement; QueryError naming what was refused."""
    import duckdb

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
    time_limit_s: float | None = None,
) -> QueryResult:
    """Check and run ``sql`` in a read-only transaction on ``connection``.

    ``time_limit_s``: the query is interrupted (and refused) when it runs longer.

    Raises QueryError for a refused statement, one DuckDB rejects, or one over the time limit.
    """
    import threading

    import duckdb

    from causalscope.daemon.client._json import jsonable

    check_select(sql)
    timer = None
    if time_limit_s is not None:
        timer = threading.Timer(time_limit_s, connection.interrupt)
        timer.daemon = True
    try:
        connection.execute("BEGIN TRANSACTION READ ONLY")
        try:
            if timer is not None:
                timer.start()
            cursor = connection.execute(sql, list(params) if params else None)
            columns = tuple(d[0] for d in cursor.description or ())
            fetched = cursor.fetchmany(max_rows + 1)
        finally:
            if timer is not None:
                timer.cancel()
            connection.execute("ROLLBACK")
    except duckdb.InterruptException as exc:
        raise QueryError(
            "Query timed out", f"{sql!r} ran longer than {time_limit_s:g} s and was stopped"
        ) from exc
    except duckdb.Error as exc:
        raise QueryError("Query failed", f"{sql!r}: {exc}") from exc
    truncated = len(fetched) > max_rows
    rows = tuple(tuple(jsonable(v) for v in row) for row in fetched[:max_rows])
    return QueryResult(columns=columns, rows=rows, truncated=truncated)
