"""What ``/sessions/{id}/sql`` runs: one read-only SELECT, bounded in length, rows and time.

DuckDB parses the text itself (:func:`duckdb.extract_statements` gives each statement's
type), so a write, ``ATTACH``, ``COPY``, ``PRAGMA`` or ``SET`` is refused by what it is, not by
how it is spelt, and so are several statements. The query then runs in a read-only
transaction on a connection without file access (the session's query endpoint, or its file
opened read-only), interrupted when it runs over the time limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from causalscope.daemon.client.errors import QueryError
from causalscope.daemon.client.local import check_select

__all__ = ["MAX_QUERY_CHARS", "MAX_SQL_ROWS", "SQL_TIME_LIMIT_S", "SqlRequest", "guard_sql"]

#: The longest query text accepted.
MAX_QUERY_CHARS = 4_000
#: The most rows one request may ask for (``limit``).
MAX_SQL_ROWS = 10_000
#: Seconds a query may run before it is interrupted.
SQL_TIME_LIMIT_S = 5.0


@dataclass(frozen=True)
class SqlRequest:
    """A checked query: the statement and the rows it may return."""

    sql: str
    max_rows: int


def guard_sql(sql: str, max_rows: int) -> SqlRequest:
    """``sql`` checked: one SELECT statement of at most :data:`MAX_QUERY_CHARS` characters.

    Raises
    ------
    QueryError
        The text is empty or too long, is not exactly one statement, or not a SELECT (the
        message names what was refused), or ``max_rows`` is out of (0, :data:`MAX_SQL_ROWS`].
    """
    if not 0 < max_rows <= MAX_SQL_ROWS:
        raise QueryError("Query refused", f"limit must be from 1 to {MAX_SQL_ROWS}, got {max_rows}")
    if not sql.strip():
        raise QueryError("Query refused", "the query is empty; give one SELECT statement")
    if len(sql) > MAX_QUERY_CHARS:
        raise QueryError(
            "Query refused",
            f"the query has {len(sql)} characters; at most {MAX_QUERY_CHARS} are accepted",
        )
    return SqlRequest(sql=check_select(sql), max_rows=max_rows)
