"""``SESSION.endpoints.json``: where a running session publishes and answers queries.

The store writes it beside the database when it opens and removes it when it closes, so that
``causalscope query`` and ``summary`` can reach a session whose file is locked by the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from causalscope.daemon.client.errors import StoreError

__all__ = [
    "Endpoints",
    "endpoints_path",
    "load_endpoints",
    "read_endpoints",
    "remove_endpoints",
    "write_endpoints",
]


@dataclass(frozen=True)
class Endpoints:
    """The endpoints of a running session.

    Attributes
    ----------
    database
        The session's database file.
    pid
        Process id of the daemon holding it.
    publish
        Bound PUB address (``tcp://127.0.0.1:PORT``), or None when it does not publish.
    query
        Bound query (REP) address, or None when it answers no queries.
    control
        Bound control (REP) address of the running session (see
        :mod:`causalscope.daemon.client.control`), or None.
    token
        The secret a control request must carry (the file is readable by its owner only).
    """

    database: str
    pid: int
    publish: str | None
    query: str | None
    control: str | None = None
    token: str | None = None


def endpoints_path(database: Path) -> Path:
    """``SESSION.endpoints.json`` beside ``SESSION.duckdb``."""
    return database.with_name(f"{database.stem}.endpoints.json")


def write_endpoints(database: Path, endpoints: Endpoints) -> Path:
    """Write the file atomically (a reader never sees half of it), readable by its owner only."""
    path = endpoints_path(database)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(endpoints.__dict__, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(
            "Cannot write the endpoints file", f"{path}: {exc.strerror or exc}", path=path
        ) from exc
    return path


def load_endpoints(path: Path) -> Endpoints:
    """The endpoints in the file ``path`` (a copy made for a forwarded session may lack ``pid``).

    Raises
    ------
    StoreError
        The file cannot be read, is not JSON, or lacks ``database``.
    """
    found = _load(Path(path), missing_ok=False)
    assert found is not None
    return found


def read_endpoints(database: Path) -> Endpoints | None:
    """The endpoints a running session wrote beside ``database``, or None when there are none."""
    return _load(endpoints_path(database), missing_ok=True)


def _load(path: Path, *, missing_ok: bool) -> Endpoints | None:
    try:
        data = json.loads(path.read_text())
        return Endpoints(
            database=str(data["database"]),
            pid=int(data.get("pid", 0)),
            publish=data.get("publish"),
            query=data.get("query"),
            control=data.get("control"),
            token=data.get("token"),
        )
    except FileNotFoundError as exc:
        if missing_ok:
            return None
        raise StoreError("Endpoints file not found", f"{path}: {exc.strerror}", path=path) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError("Unreadable endpoints file", f"{path}: {exc}", path=path) from exc


def remove_endpoints(database: Path) -> None:
    """Remove the file, if it is there."""
    with contextlib.suppress(FileNotFoundError):
        endpoints_path(database).unlink()
