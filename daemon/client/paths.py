"""The session's files where its folder lies now: a session copied or moved after it ran.

The session stores the files it wrote by absolute path: each exposure's ``outputs``, the maps
and class stacks of its reconstructions, and, inside the STAR files it wrote, the particle
images (``N@stack.mrcs``) and their micrographs. A session folder copied to storage or to a
laptop keeps those files under the same names relative to the folder, so a stored path that
no longer exists is read relative to the folder where the database now lies.

:func:`relocation` finds the folder's old place from the paths themselves: the first stored
output that is missing but whose tail (its last ``k`` parts, longest first) exists under the
database's folder gives the old prefix. Paths under that prefix are then read under the new
folder (:meth:`Relocation.path`, :meth:`Relocation.image_name`); others, and every path of a
session that has not moved, are left as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import duckdb

__all__ = ["Relocation", "old_folder", "relocate_particles", "relocation", "session_file"]

#: stored outputs looked at to find where the folder was
_SAMPLE_SQL = (
    "SELECT outputs FROM exposures WHERE outputs IS NOT NULL ORDER BY exposure_id LIMIT 20"
)
_DATABASE_SQL = "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"


@dataclass(frozen=True)
class Relocation:
    """Maps paths under ``then`` (the session folder's old place) to ``now`` (its new one);
    ``then`` None: the session has not moved (or nothing showed where it was)."""

    then: PurePath | None = None
    now: PurePath | None = None

    @property
    def moved(self) -> bool:
        return self.then is not None and self.now is not None and self.then != self.now

    def path(self, stored: str) -> str:
        """``stored`` under the new folder when it lay under the old one, else unchanged."""
        if not self.moved or not stored:
            return stored
        assert self.then is not None and self.now is not None
        parts, old = PurePath(stored).parts, self.then.parts
        if len(parts) <= len(old) or parts[: len(old)] != old:
            return stored
        return str(self.now.joinpath(*parts[len(old) :]))

    def path_of(self, stored: str) -> Path:
        """:meth:`path` as a :class:`~pathlib.Path`."""
        return Path(self.path(stored))

    def image_name(self, name: str) -> str:
        """A particle's ``rlnImageName`` (``N@stack``) with its stack moved by :meth:`path`."""
        index, sep, stack = str(name).partition("@")
        return f"{index}{sep}{self.path(stack)}" if sep else self.path(index)

    def outputs(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """An exposure's ``outputs`` with each path moved."""
        if not self.moved:
            return outputs
        return {k: self.path(v) if isinstance(v, str) else v for k, v in outputs.items()}


def _folder_of(connection: Any) -> Path | None:
    try:
        row = connection.execute(_DATABASE_SQL).fetchone()
    except (duckdb.Error, AttributeError):  # not a DuckDB connection: nothing to say
        return None
    return Path(row[0]).resolve().parent if row and row[0] else None


def old_folder(stored: str, folder: Path) -> PurePath | None:
    """Where the session folder was, from one ``stored`` absolute path that is missing now
    and whose tail (longest first) exists under ``folder``; None otherwise."""
    path = PurePath(stored)
    if not path.is_absolute() or Path(path).exists():
        return None
    parts = path.parts
    for k in range(1, len(parts)):
        if folder.joinpath(*parts[k:]).exists():
            return PurePath(*parts[:k])
    return None


def session_file(stored: str, folder: Path) -> Path:
    """One file the session stored: relative to ``folder`` (the session's folder) when
    relative; as stored when it exists; else its longest tail that exists under ``folder``
    (the folder moved); else as stored."""
    path = Path(stored)
    if not path.is_absolute():
        return folder / path
    then = old_folder(stored, folder)
    return path if then is None else Relocation(then, PurePath(folder)).path_of(stored)


def relocation(connection: Any) -> Relocation:
    """How the session behind ``connection`` (a DuckDB connection to its file) has moved."""
    folder = _folder_of(connection)
    if folder is None:
        return Relocation()
    for (outputs_json,) in connection.execute(_SAMPLE_SQL).fetchall():
        outputs = json.loads(outputs_json) if isinstance(outputs_json, str) else outputs_json
        for stored in (outputs or {}).values():
            if not isinstance(stored, str):
                continue
            if PurePath(stored).is_absolute() and Path(stored).exists():
                return Relocation()  # still where it was written
            then = old_folder(stored, folder)
            if then is not None:
                return Relocation(then, PurePath(folder))
    return Relocation()


def relocate_particles(table: Any, moved: Relocation) -> Any:
    """A particles table (pandas) of a STAR the session wrote, its ``rlnImageName`` and
    ``rlnMicrographName`` moved (:meth:`Relocation.image_name`, :meth:`Relocation.path`)."""
    if table is None or not moved.moved:
        return table
    changes = {}
    if "rlnImageName" in table:
        changes["rlnImageName"] = [moved.image_name(n) for n in table["rlnImageName"].astype(str)]
    if "rlnMicrographName" in table:
        names = table["rlnMicrographName"].astype(str)
        changes["rlnMicrographName"] = [moved.path(n) for n in names]
    return table.assign(**changes) if changes else table
