"""Creating the schema in a new session file, and bringing an older file up to date.

An older file gets the tables it lacks, the columns its tables lack (declared in
:mod:`.schema`; rows written before hold NULL there) and the views as defined now; the version
reached is recorded in ``schema_version``. Version 1 files (written before the views) are
migrated so. A file written by a newer causalscope is refused.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from causalscope.daemon.client.errors import StoreError
from causalscope.daemon.client.views import VIEWS
from causalscope.daemon.store import schema

if TYPE_CHECKING:
    import duckdb

__all__ = ["prepare_schema"]


def prepare_schema(con: duckdb.DuckDBPyConnection, path: Path, now: dt.datetime) -> int | None:
    """Create what the file lacks, inside the caller's transaction.

    Returns
    -------
    int or None
        The version the file had when it was older than :data:`schema.SCHEMA_VERSION`, or
        None (a new file, or one already current).

    Raises
    ------
    StoreError
        The file was written by a newer schema.
    """
    for table in schema.TABLE_SPECS:
        for statement in table.ddl():
            con.execute(statement)
    versions = [v for (v,) in con.execute("SELECT version FROM schema_version").fetchall()]
    found = max(versions) if versions else None
    if found is not None and found > schema.SCHEMA_VERSION:
        raise StoreError(
            "Session written by a newer causalscope",
            f"{path} has schema version {found}; this causalscope reads up to "
            f"{schema.SCHEMA_VERSION}",
            path=path,
        )
    if found is not None and found < schema.SCHEMA_VERSION:
        _add_missing_columns(con)
    for view in VIEWS:  # as defined now: a view is never older than the code that reads it
        con.execute(view.ddl())
    if found != schema.SCHEMA_VERSION:
        con.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            [schema.SCHEMA_VERSION, now],
        )
    if con.execute("SELECT count(*) FROM session").fetchone() == (0,):
        con.execute("INSERT INTO session (name, created_at) VALUES (?, ?)", [path.stem, now])
    return found if found is not None and found < schema.SCHEMA_VERSION else None


def _add_missing_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Add the declared columns an older file's tables lack, at their ends, without their
    constraints (DuckDB adds none to a table that has rows; older rows hold NULL)."""
    existing: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
    ).fetchall():
        existing.setdefault(str(table), set()).add(str(column))
    for table in schema.TABLE_SPECS:
        for column in table.columns:
            if column.name not in existing.get(table.name, {column.name}):
                base_type = column.type.split()[0]
                con.execute(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {base_type}")
