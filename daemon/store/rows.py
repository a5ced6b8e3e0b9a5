"""An exposure's record written as rows, inside the commit's transaction.

Every INSERT and UPDATE names its columns; the values are read off the record by the tables'
declarations (:mod:`.schema`), so the order of a table's columns never matters here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from causalscope.daemon.store import schema
from causalscope.daemon.store.causal import delete_causal, write_inputs
from causalscope.daemon.store.tables import encode_json

if TYPE_CHECKING:
    import duckdb

    from causalscope.models.records import ExposureRecord, PickingRecord

__all__ = ["PART_TABLES", "write_record"]

#: The tables that hold parts of a commit: replaced when an exposure is committed again.
PART_TABLES = ("motion", "ctf", "picking", "picks", "flags", "repro", "triage")
# The exposures columns a commit writes (the rest are the source's, written when seen).
_COMMIT_COLUMNS = (
    "state",
    "gate_status",
    "done_at",
    "latency_s",
    "n_frames",
    "pixel_size_angstrom",
    "voltage_kv",
    "cs_mm",
    "amplitude_contrast",
    "dose_e_per_a2",
    "device",
    "outputs",
    "timings_s",
    "problems",
    "acquisition",
)


def write_record(
    con: duckdb.DuckDBPyConnection,
    record: ExposureRecord,
    *,
    state: str | None,
    params_hash: str,
    stage: str,
    run_id: int | None,
    now: dt.datetime,
    latency_s: float | None,
    problems: Sequence[str],
) -> None:
    """Write ``record``'s rows; ``state`` is the exposure's before (None: never seen)."""
    eid = record.exposure_id
    exposures = schema.EXPOSURES_TABLE
    if state is None:
        # Committed without having been recorded as seen (e.g. by a one-off command).
        con.execute(
            exposures.insert_sql(["exposure_id", "movie_path", "state", "seen_at"]),
            {"exposure_id": eid, "movie_path": record.movie_path, "state": "seen", "seen_at": now},
        )
    values = exposures.values(
        record,
        exposure_id=eid,
        state="done",
        done_at=now,
        latency_s=latency_s,
        problems=encode_json(list(problems)),
    )
    con.execute(exposures.update_sql(_COMMIT_COLUMNS, key="exposure_id"), values)
    if state is not None and state != "seen":
        # A commit under new parameters replaces the previous commit's rows.
        for name in PART_TABLES:
            con.execute(f"DELETE FROM {name} WHERE exposure_id = ?", [eid])
        delete_causal(con, eid)
    for part, table in (
        (record.motion, schema.MOTION_TABLE),
        (record.ctf, schema.CTF_TABLE),
        (record.picking, schema.PICKING_TABLE),
        (record.repro, schema.REPRO_TABLE),
        (record.triage, schema.TRIAGE_TABLE),
    ):
        if part is not None:
            row = table.values(part, exposure_id=eid)
            con.execute(table.insert_sql(row), row)
    if record.picking is not None:
        _write_picks(con, eid, record.picking)
    if record.causal is not None:
        write_inputs(con, eid, record.causal)
    flags = schema.FLAGS_TABLE
    for position, flag in enumerate(record.flags):
        row = flags.values(flag, exposure_id=eid, position=position)
        con.execute(flags.insert_sql(row), row)
    results = schema.RESULTS_TABLE
    row = results.values(
        record,
        exposure_id=eid,
        stage=stage,
        params_hash=params_hash,
        run_id=run_id,
        committed_at=now,
    )
    con.execute(results.insert_sql(row), row)


def _write_picks(con: duckdb.DuckDBPyConnection, eid: str, picking: PickingRecord) -> None:
    if not picking.picks_xy_px:
        return
    picks = schema.PICKS_TABLE
    rows = [
        {
            "exposure_id": eid,
            "position": i,
            "x_px": float(xy[0]),
            "y_px": float(xy[1]),
            "score": float(score),
        }
        for i, (xy, score) in enumerate(zip(picking.picks_xy_px, picking.scores, strict=True))
    ]
    con.executemany(picks.insert_sql(picks.column_names), rows)
