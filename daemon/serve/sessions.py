"""The sessions under a folder, and reading one: through its query endpoint while it runs,
from its file (read-only) after.

A session is ``<folder>/<name>/<name>.duckdb`` (as :class:`~causalscope.daemon.session.
SessionPaths` lays it out) or a bare ``<folder>/<name>.duckdb``. It is live while its store's
``<name>.endpoints.json`` is beside the file and the process named there is alive; a live
session's file is never opened here (DuckDB allows one writing process, and a reader would
block the daemon's next start), every read goes to its query endpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from causalscope.daemon.client._json import row_dict
from causalscope.daemon.client.control import control_request
from causalscope.daemon.client.endpoints import Endpoints, read_endpoints
from causalscope.daemon.client.errors import ControlError, StoreError
from causalscope.daemon.client.local import MAX_ROWS, open_session_file, run_select
from causalscope.daemon.client.query import QueryResult, query_endpoint
from causalscope.models.errors import InputError

__all__ = [
    "ID_PATTERN",
    "NotFoundError",
    "Reader",
    "SessionRef",
    "check_id",
    "find_session",
    "list_sessions",
]

#: Session and exposure ids: letters, digits, '.', '_', '-', not starting with a dot (no
#: path can be made of one).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
_ID = re.compile(ID_PATTERN)
#: Seconds to wait for a live session's endpoints beyond a query's own time limit.
_GRACE_S = 2.0


class NotFoundError(InputError):
    """A session, an exposure or a file that is not there (HTTP 404)."""


@dataclass(frozen=True)
class SessionRef:
    """One session under the folder.

    Attributes
    ----------
    name
        The session's name (its id in the API).
    database
        Its DuckDB file.
    """

    name: str
    database: Path

    @property
    def root(self) -> Path:
        """The folder that holds the session's database and outputs."""
        return self.database.parent

    def endpoints(self) -> Endpoints | None:
        """The running session's endpoints, or None when it is finished (or its daemon died)."""
        found = read_endpoints(self.database)
        if found is None or found.query is None:
            return None
        if found.pid and not _alive(found.pid):
            return None  # a crashed daemon's file: the database is free to open
        return found

    @contextmanager
    def reading(self, *, time_limit_s: float = 10.0) -> Iterator[Reader]:
        """A reader of the session for a few queries (see the module docstring): its query
        endpoint while it runs, else its file opened read-only until the block ends.

        Raises
        ------
        StoreError
            The file cannot be opened (e.g. a daemon without a query endpoint holds it).
        """
        endpoints = self.endpoints()
        if endpoints is not None and endpoints.query is not None:
            yield Reader(endpoints.query, None, time_limit_s)
            return
        connection = open_session_file(self.database)
        try:
            yield Reader(None, connection, time_limit_s)
        finally:
            connection.close()

    def select(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        max_rows: int = MAX_ROWS,
        time_limit_s: float = 10.0,
    ) -> QueryResult:
        """Run one read-only SELECT on the session (see :class:`Reader`)."""
        with self.reading(time_limit_s=time_limit_s) as reader:
            return reader.select(sql, params, max_rows=max_rows)

    def status(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The running session's status (as published on ``status``), or None when it is
        finished or does not answer in ``timeout_s``."""
        endpoints = self.endpoints()
        if endpoints is None or endpoints.control is None or endpoints.token is None:
            return None
        try:
            reply = control_request(
                endpoints.control, endpoints.token, "status", timeout_s=timeout_s
            )
        except (ControlError, StoreError):
            return None
        status: dict[str, Any] = reply["status"]
        return status


class Reader:
    """Runs SELECTs on a session: through ``address`` (its query endpoint) or on
    ``connection`` (its file, read-only); each query is stopped after ``time_limit_s``."""

    def __init__(self, address: str | None, connection: Any, time_limit_s: float) -> None:
        self.address = address
        self._connection = connection
        self._time_limit_s = time_limit_s

    @property
    def live(self) -> bool:
        """Whether the running session's endpoint answers (not its file)."""
        return self.address is not None

    def select(
        self, sql: str, params: Sequence[Any] | None = None, *, max_rows: int = MAX_ROWS
    ) -> QueryResult:
        """Run one read-only SELECT.

        Raises
        ------
        QueryError
            The statement was refused, failed or ran over the time limit.
        StoreError
            The running session's endpoint does not answer.
        """
        if self.address is not None:
            return query_endpoint(
                self.address,
                sql,
                params,
                timeout_s=self._time_limit_s + _GRACE_S,
                max_rows=max_rows,
                time_limit_s=self._time_limit_s,
            )
        return run_select(
            self._connection, sql, params, max_rows=max_rows, time_limit_s=self._time_limit_s
        )

    def dicts(
        self, sql: str, params: Sequence[Any] | None = None, json_columns: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """The rows of ``sql`` as JSON-safe dicts, the text of ``json_columns`` decoded."""
        result = self.select(sql, params)
        return [row_dict(result.columns, row, json_columns) for row in result.rows]


def check_id(value: str, what: str) -> str:
    """``value`` if it is a valid id; InputError naming it otherwise (no path characters)."""
    if not _ID.match(value):
        raise InputError(
            f"Invalid {what}",
            f"{value!r} is not a valid {what}: letters, digits, '.', '_' and '-' only, "
            "not starting with '.', at most 255 characters",
        )
    return value


def list_sessions(folder: Path) -> list[SessionRef]:
    """Every session under ``folder``, by name.

    Raises
    ------
    InputError
        ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("Sessions folder not found", f"{folder} is not a folder", path=folder)
    found: dict[str, SessionRef] = {}
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / f"{child.name}.duckdb").is_file():
            found[child.name] = SessionRef(child.name, child / f"{child.name}.duckdb")
        elif child.suffix == ".duckdb" and child.is_file() and _ID.match(child.stem):
            found.setdefault(child.stem, SessionRef(child.stem, child))
    return [found[name] for name in sorted(found)]


def find_session(folder: Path, name: str) -> SessionRef:
    """The session ``name`` under ``folder``; NotFoundError when there is none."""
    check_id(name, "session id")
    folder = Path(folder)
    for database in (folder / name / f"{name}.duckdb", folder / f"{name}.duckdb"):
        if database.is_file():
            return SessionRef(name, database)
    raise NotFoundError("Session not found", f"no session {name!r} in {folder}", path=folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
