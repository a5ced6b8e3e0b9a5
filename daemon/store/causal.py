"""The causal model's rows in the session database (tables documented in :mod:`.schema`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb

from causalscope.models.records import CausalInputs

if TYPE_CHECKING:
    from causalscope.models.causal import CausalUpdate

__all__ = ["delete_causal", "read_inputs", "stored_updates", "write_inputs", "write_update"]

_INPUT_COLUMNS = (
    "ice_thickness_nm",
    "dose_e_per_a2",
    "total_drift_px",
    "defocus_um",
    "astigmatism_angstrom",
    "image_shift_um",
    "beam_tilt_mrad",
    "n_particles",
    "fit_resolution_angstrom",
    "ssnr_bfactor_angstrom2",
)


def write_inputs(con: duckdb.DuckDBPyConnection, exposure_id: str, inputs: CausalInputs) -> None:
    """The exposure's causal inputs, numbered in commit order (inside the commit's transaction)."""
    values = inputs.model_dump()
    con.execute(
        f"INSERT INTO causal_inputs (exposure_id, {', '.join(_INPUT_COLUMNS)}) "
        f"VALUES (?, {', '.join('?' for _ in _INPUT_COLUMNS)})",
        [exposure_id, *(values[c] for c in _INPUT_COLUMNS)],
    )


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
    con.execute(
        "INSERT INTO causal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            eid,
            update.index,
            update.regime,
            update.regime_change,
            update.observed_resolution_angstrom,
            update.best_resolution_angstrom,
            update.predicted_loss_angstrom,
            update.predicted_loss_sd_angstrom,
            update.unexplained_angstrom,
            update.dominant_cause,
            update.converged,
        ],
    )
    con.executemany(
        "INSERT INTO causal_shares VALUES (?, ?, ?, ?)",
        [[eid, s.cause, s.share_angstrom, s.sd_angstrom] for s in update.shares],
    )
    con.executemany(
        "INSERT INTO causal_ranking VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [
                update.index,
                r.cause,
                r.rank,
                r.mean_angstrom,
                r.sd_angstrom,
                r.p_top,
                r.weight_mean,
                r.weight_sd,
                r.tolerance,
                r.observed,
                r.converged,
                r.advice,
                eid,
            ]
            for r in update.ranking
        ],
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
