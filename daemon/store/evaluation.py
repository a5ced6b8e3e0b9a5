"""The running reconstructions' rows in the session database (tables declared in :mod:`.schema`).

One update is written in one transaction, keyed by its version in ``evaluations``: writing
a version that is there already changes nothing (a restart may hand the last one over again).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from causalscope.daemon.store import schema

if TYPE_CHECKING:
    import duckdb

    from causalscope.actors._evaluation_results import EvaluationUpdate

__all__ = ["class_labels", "particle_stars", "stored_version", "write_evaluation"]


def write_evaluation(
    con: duckdb.DuckDBPyConnection,
    update: EvaluationUpdate,
    *,
    run_id: int | None,
    now: dt.datetime,
) -> bool:
    """Insert one update's rows; False (and nothing written) when its version is stored."""
    version = update.version
    found = con.execute("SELECT 1 FROM evaluations WHERE version = ?", [version]).fetchone()
    if found is not None:
        return False
    row = schema.EVALUATIONS_TABLE.values(update, run_id=run_id, committed_at=now)
    con.execute(schema.EVALUATIONS_TABLE.insert_sql(row), row)
    if update.class_set is not None:
        table = schema.CLASS_SETS_TABLE
        row = table.values(update.class_set, version=version)
        con.execute(table.insert_sql(row), row)
        classes = schema.CLASSES_TABLE
        averages = update.class_set.averages_path
        con.executemany(
            classes.insert_sql(classes.column_names),
            [
                classes.values(c, version=version, image=f"{c.class_index + 1}@{averages}")
                for c in update.class_set.classes
            ],
        )
    for table, part in (
        (schema.RECONSTRUCTIONS_TABLE, update.map),
        (schema.FORECASTS_TABLE, update.forecast),
    ):
        if part is not None:
            row = table.values(part, version=version)
            con.execute(table.insert_sql(row), row)
    return True


def stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The last update stored, or None."""
    found = con.execute("SELECT max(version) FROM evaluations").fetchone()
    return None if found is None or found[0] is None else int(found[0])


def particle_stars(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    """Done exposures that passed the gate (or warned) with extracted particles, in commit
    order: (id, particle STAR, count)."""
    rows = con.execute(
        """
        SELECT e.exposure_id, e.outputs->>'particles_star', coalesce(p.n_particles, 0)
        FROM exposures e LEFT JOIN picking p USING (exposure_id)
        WHERE e.state = 'done' AND e.gate_status <> 'fail'
          AND e.outputs->>'particles_star' IS NOT NULL AND p.n_particles > 0
        ORDER BY e.done_at, e.exposure_id
        """
    ).fetchall()
    return [(str(e), str(star), int(n)) for e, star, n in rows]


def class_labels(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """The operator's latest label per class."""
    rows = con.execute("SELECT class_index, label FROM class_labels ORDER BY id").fetchall()
    out: dict[int, str] = {}
    for index, label in rows:
        out[int(index)] = str(label)
    return out
