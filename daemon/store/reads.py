"""What the store reads back on its own connection: published rows, pending work, counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from causalscope.daemon.client._json import row_dict
from causalscope.daemon.client.views import PUBLISHED_EXPOSURE_SQL
from causalscope.daemon.store import schema

if TYPE_CHECKING:
    import duckdb

__all__ = ["PENDING_SQL", "PendingExposure", "exposure_row", "fetch_dict", "pending_exposures"]

#: Exposures seen, neither done nor quarantined, in the order they were seen.
PENDING_SQL = (
    "SELECT exposure_id, movie_path, source, metadata_path FROM exposures "
    "WHERE state = 'seen' ORDER BY seen_at, exposure_id"
)
# The published row's JSON columns: the exposure's own and its joined parts.
_EXPOSURE_JSON = frozenset({*schema.JSON_COLUMNS["exposures"], "motion", "ctf", "picking", "flags"})


@dataclass(frozen=True)
class PendingExposure:
    """An exposure recorded as seen and neither done nor quarantined: a restart processes it.

    Attributes
    ----------
    exposure_id
        The exposure's id.
    movie_path
        The movie on disk (the stream's spooled MRC for streamed exposures).
    source
        ``"watcher"`` or ``"stream"``.
    metadata_path
        The EPU XML or mdoc paired with it, or None.
    """

    exposure_id: str
    movie_path: Path
    source: str
    metadata_path: Path | None


def fetch_dict(cursor: duckdb.DuckDBPyConnection, table: str) -> dict[str, Any]:
    """The cursor's one row (``RETURNING *`` of ``table``) as a JSON-safe dict."""
    columns = [d[0] for d in cursor.description or ()]
    row = cursor.fetchone()
    if row is None:
        raise ValueError(f"no row returned from {table!r}")
    return row_dict(columns, row, schema.JSON_COLUMNS.get(table, ()))


def exposure_row(con: duckdb.DuckDBPyConnection, exposure_id: str) -> dict[str, Any] | None:
    """A row of ``published_exposures`` (JSON decoded, times as ISO text), or None."""
    cursor = con.execute(PUBLISHED_EXPOSURE_SQL, {"id": exposure_id})
    columns = [d[0] for d in cursor.description or ()]
    row = cursor.fetchone()
    return None if row is None else row_dict(columns, row, _EXPOSURE_JSON)


def pending_exposures(rows: list[tuple[Any, ...]]) -> list[PendingExposure]:
    """The rows of :data:`PENDING_SQL` as :class:`PendingExposure`."""
    return [
        PendingExposure(
            exposure_id=eid,
            movie_path=Path(movie),
            source=str(source),
            metadata_path=None if meta is None else Path(meta),
        )
        for eid, movie, source, meta in rows
    ]
