"""The causal model's rows in the session database (tables declared in :mod:`.schema`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from causalscope.daemon.store import schema
from causalscope.models.records import CausalInputs

if TYPE_CHECKING:
    import duckdb

    from causalscope.models.causal import CausalUpdate

__all__ = ["delete_causal", "read_inputs", "stored_updates", "write_inputs", "write_update"]

# The inputs' columns (every one but the key and the order).
_INPUT_COLUMNS = tuple(
    c.name for c in schema.CAUSAL_INPUTS_TABLE.columns if c.attribute is not None
)


def write_inputs(con: duckdb.DuckDBPyConnection, exposure_id: str, inputs: CausalInputs) -> None:
    """The exposure's causal inputs, numbered in commit order (inside the commit's transaction)."""
    table = schema.CAUSAL_INPUTS_TABLE
    row = table.values(inputs, exposure_id=exposure_id)
    con.execute(table.insert_sql(row), row)


def delete_causal(con: duckdb.DuckDBPyConnection, exposure_id: str) -> None:
    """Forget an exposure's causal rows (a commit under new parameters replaces them)."""
    for table in ("causal_inputs", "causal", "causal_shares"):
        con.execute(f"DELETE FROM {table} WHERE exposure_id = ?", [exposure_id])


def write_update(con: duckdb.DuckDBPyConnection, update: CausalUpdate) -> None:
    """One update: the exposure's verdict and shares, and the session's ranking at that point."""
    eid = update.exposure_id
    con.execute("DELETE FROM causal WHERE exposure_id = ?", [eid])
    con.execute("DELETE FROM causal_shares WHERE exposure_id = ?", [eid])
    con.execute("DELETE FROM causal_ranking WHERE model_index = ?", [update.index])
    verdict = schema.CAUSAL_TABLE.values(update)
    con.execute(schema.CAUSAL_TABLE.insert_sql(verdict), verdict)
    shares = schema.CAUSAL_SHARES_TABLE
    if update.shares:
        con.executemany(
            shares.insert_sql(shares.column_names),
            [shares.values(s, exposure_id=eid) for s in update.shares],
        )
    ranking = schema.CAUSAL_RANKING_TABLE
    if update.ranking:
        con.executemany(
            ranking.insert_sql(ranking.column_names),
            [ranking.values(r, model_index=update.index, exposure_id=eid) for r in update.ranking],
        )


def read_inputs(con: duckdb.DuckDBPyConnection) -> list[tuple[str, CausalInputs]]:
    """Every stored input, in commit order (what a restart replays)."""
    rows = con.execute(
        f"SELECT exposure_id, {', '.join(_INPUT_COLUMNS)} FROM causal_inputs ORDER BY seq"
    ).fetchall()
    out = []
    for row in rows:
        values: dict[str, Any] = dict(zip(_INPUT_COLUMNS, row[1:], strict=True))
        out.append((str(row[0]), CausalInputs.model_validate(values)))
    return out


def stored_updates(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Exposures whose update is stored."""
    return {str(r[0]) for r in con.execute("SELECT exposure_id FROM causal").fetchall()}
