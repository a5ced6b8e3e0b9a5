"""The writer's connection: one per session file in a process, and its transactions."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb

from causalscope.daemon.client.errors import StoreError

__all__ = ["connect_writer", "release_writer", "transaction"]

# Database files with an open store in this process.
_OPEN: set[Path] = set()
_OPEN_LOCK = threading.Lock()


def connect_writer(path: Path) -> duckdb.DuckDBPyConnection:
    """The file's writing connection; refused when a store of this process has it open.

    Raises
    ------
    StoreError
        The file is open in this process already, locked by another one, or not DuckDB's.
    """
    key = path.resolve()
    with _OPEN_LOCK:
        # DuckDB would hand a second store in this process the same database: two writers.
        if key in _OPEN:
            raise StoreError(
                "Session already open",
                f"{path} is already open in this process; a session has one store",
                path=path,
            )
        _OPEN.add(key)
    try:
        # No SELECT can read or write other files, including through the query endpoint.
        return duckdb.connect(str(path), config={"enable_external_access": False})
    except duckdb.Error as exc:
        release_writer(path)
        raise StoreError("Cannot open the session database", f"{path}: {exc}", path=path) from exc


def release_writer(path: Path) -> None:
    """The file may be opened again by a store of this process."""
    with _OPEN_LOCK:
        _OPEN.discard(path.resolve())


@contextlib.contextmanager
def transaction(
    con: duckdb.DuckDBPyConnection, path: Path, what: str
) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction; rolled back on any error, storage errors raised as StoreError."""
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            # A failed COMMIT has already rolled back; there is nothing left to undo then.
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
    except (duckdb.Error, OSError) as exc:
        raise StoreError(
            "Session database write failed",
            f"{path}: {what} failed and was rolled back: {exc}",
            path=path,
        ) from exc
