"""The session store: the only writer of a session's DuckDB file.

Every write is one transaction on the caller's thread: an exposure is recorded when a source
sees it (before it is processed), and its record is committed with the idempotency key
(exposure, stage, parameters hash), so that a restart neither loses nor redoes work. After each
commit the committed rows are published (:mod:`daemon.store.publish`) and
``micrographs_ctf.star`` is rewritten. Readers use the query endpoint
(:mod:`daemon.store.query`) while the daemon runs, the file read-only after it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import zmq

from causalscope.daemon.store import schema
from causalscope.daemon.store._json import dumps, row_dict
from causalscope.daemon.store.causal import (
    delete_causal,
    read_inputs,
    stored_updates,
    write_inputs,
    write_update,
)
from causalscope.daemon.store.endpoints import Endpoints, remove_endpoints, write_endpoints
from causalscope.daemon.store.errors import StoreError
from causalscope.daemon.store.publish import Publisher
from causalscope.daemon.store.query import QueryServer
from causalscope.daemon.store.summary import COUNTS_SQL

if TYPE_CHECKING:
    from causalscope.models.causal import CausalUpdate
    from causalscope.models.records import CausalInputs, ExposureRecord

__all__ = ["PendingExposure", "SeenState", "SessionStore"]

SeenState = Literal["new", "pending", "done", "quarantined", "conflict"]

_SOURCES = ("watcher", "stream")
# Database files with an open store in this process.
_OPEN: set[Path] = set()
_OPEN_LOCK = threading.Lock()
_LABELS = ("accept", "reject")


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


# The exposure with its motion and ctf rows as JSON objects and its flags as a JSON list.
# Each subquery filters on the constant: a correlated one would scan the whole table.
_EXPOSURE_ROW_SQL = """
SELECT e.*,
    (SELECT to_json(m) FROM motion AS m WHERE m.exposure_id = $id) AS motion,
    (SELECT to_json(p) FROM picking AS p WHERE p.exposure_id = $id) AS picking,
    (SELECT to_json(c) FROM ctf AS c WHERE c.exposure_id = $id) AS ctf,
    (SELECT to_json(list(f ORDER BY f.position)) FROM flags AS f WHERE f.exposure_id = $id)
        AS flags
FROM exposures AS e WHERE e.exposure_id = $id
"""


def _now() -> dt.datetime:
    # TIMESTAMP columns hold UTC without a zone (DuckDB hands TIMESTAMPTZ to Python via pytz).
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class SessionStore:
    """One session's DuckDB file, its publish socket and its query endpoint.

    Parameters
    ----------
    path
        The database (``SESSION.duckdb``); created with the schema when missing.
    publish_address
        ZeroMQ address for the PUB socket (``tcp://127.0.0.1:0`` binds a free port), or None.
    query_address
        ZeroMQ address for the query endpoint (REP), or None.
    ctf_star_path
        ``micrographs_ctf.star`` to rewrite after every commit, or None.
    publish_high_water_mark
        Messages queued per subscriber before the PUB socket drops.

    Raises
    ------
    StoreError
        The file cannot be opened (locked by another process, not a DuckDB file, written by a
        newer schema) or an endpoint cannot be bound.
    """

    def __init__(
        self,
        path: Path,
        *,
        publish_address: str | None = None,
        query_address: str | None = None,
        ctf_star_path: Path | None = None,
        publish_high_water_mark: int = 10_000,
    ) -> None:
        self._path = Path(path)
        self._ctf_star_path = ctf_star_path
        self._ctf_star_stale = False
        self._run_id: int | None = None
        self._closed = False
        self._publisher: Publisher | None = None
        self._server: QueryServer | None = None
        self._context: zmq.Context | None = None
        self._query_endpoint: str | None = None
        self._endpoints_written = False
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._key = self._path.resolve()
        with _OPEN_LOCK:
            # DuckDB would hand a second store in this process the same database: two writers.
            if self._key in _OPEN:
                raise StoreError(
                    "Session already open",
                    f"{self._path} is already open in this process; a session has one store",
                    path=self._path,
                )
            _OPEN.add(self._key)
        try:
            # No SELECT can read or write other files, including through the query endpoint.
            self._con = duckdb.connect(str(self._path), config={"enable_external_access": False})
        except duckdb.Error as exc:
            with _OPEN_LOCK:
                _OPEN.discard(self._key)
            raise StoreError(
                "Cannot open the session database", f"{self._path}: {exc}", path=self._path
            ) from exc
        try:
            self._create_schema()
            if publish_address is not None or query_address is not None:
                self._context = context = zmq.Context()
                if publish_address is not None:
                    self._publisher = Publisher(
                        context, publish_address, high_water_mark=publish_high_water_mark
                    )
                if query_address is not None:
                    self._server = self._start_query_server(context, query_address)
            write_endpoints(
                self._path,
                Endpoints(
                    database=str(self._path),
                    pid=os.getpid(),
                    publish=self.publish_endpoint,
                    query=self.query_endpoint,
                ),
            )
            self._endpoints_written = True
        except BaseException:
            self.close()
            raise

    # -- properties -------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def publish_endpoint(self) -> str | None:
        """The PUB socket's bound address (the real port when 0 was asked for), or None."""
        return None if self._publisher is None else self._publisher.endpoint

    @property
    def query_endpoint(self) -> str | None:
        """The query endpoint's bound address, or None."""
        return self._query_endpoint

    @property
    def published(self) -> int:
        """Messages handed to the PUB socket."""
        return 0 if self._publisher is None else self._publisher.sent

    @property
    def publish_dropped(self) -> int:
        """Messages the PUB socket refused (would have blocked); never retried."""
        return 0 if self._publisher is None else self._publisher.dropped

    @property
    def run_id(self) -> int | None:
        """The run started by :meth:`start_run`, or None."""
        return self._run_id

    # -- lifecycle --------------------------------------------------------------------------

    def _create_schema(self) -> None:
        with self._transaction("creating the schema") as con:
            for statement in schema.SCHEMA_SQL:
                con.execute(statement)
            versions = [v for (v,) in con.execute("SELECT version FROM schema_version").fetchall()]
            now = _now()
            if not versions:
                con.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    [schema.SCHEMA_VERSION, now],
                )
            elif max(versions) > schema.SCHEMA_VERSION:
                raise StoreError(
                    "Session written by a newer causalscope",
                    f"{self._path} has schema version {max(versions)}; this causalscope "
                    f"reads up to {schema.SCHEMA_VERSION}",
                    path=self._path,
                )
            if con.execute("SELECT count(*) FROM session").fetchone() == (0,):
                con.execute(
                    "INSERT INTO session (name, created_at) VALUES (?, ?)", [self._path.stem, now]
                )

    def _start_query_server(self, context: zmq.Context, address: str) -> QueryServer:
        socket = context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.bind(address)
        except zmq.ZMQError as exc:
            socket.close()
            raise StoreError(
                "Cannot bind the query endpoint", f"{address}: {exc} (is another session on it?)"
            ) from exc
        self._query_endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        return QueryServer(socket, self._con.cursor(), self._path.name)

    def check(self) -> None:
        """Raise the error that stopped the query endpoint's thread, if one did."""
        if self._server is not None:
            self._server.check()

    def close(self) -> None:
        """Stop the query thread, close the sockets and the database, remove the endpoints file."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.stop()
        if self._publisher is not None:
            self._publisher.close()
        if self._context is not None:
            self._context.term()
        if self._endpoints_written:
            remove_endpoints(self._path)
        with contextlib.suppress(duckdb.Error, AttributeError):
            self._con.close()
        with _OPEN_LOCK:
            _OPEN.discard(self._key)

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction; rolled back on any error, storage errors raised as StoreError."""
        if self._closed:
            raise StoreError("Session store closed", f"{self._path}: {what} after close()")
        con = self._con
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
                f"{self._path}: {what} failed and was rolled back: {exc}",
                path=self._path,
            ) from exc

    def start_run(
        self, *, settings_json: str, version: str, command_line: list[str], params_hash: str
    ) -> int:
        """Record a start of the daemon with its resolved settings; returns the run's id."""
        json.loads(settings_json)  # a ValueError here, not a half-valid JSON column
        with self._transaction("recording the run") as con:
            row = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchone()
            assert row is not None
            run_id = int(row[0])
            con.execute(
                "INSERT INTO runs (run_id, started_at, version, command_line, settings_json, "
                "params_hash) VALUES (?, ?, ?, ?, ?, ?)",
                [run_id, _now(), version, json.dumps(command_line), settings_json, params_hash],
            )
        self._run_id = run_id
        return run_id

    def record_seen(
        self,
        exposure_id: str,
        *,
        movie_path: str,
        source: str,
        metadata_path: str | None = None,
    ) -> SeenState:
        """Record that a source saw an exposure, before it is processed (committed at once).

        Returns
        -------
        str
            ``"new"`` (first seen), ``"pending"`` (seen before, not done: process it),
            ``"done"``, ``"quarantined"``, or ``"conflict"`` when the id was seen with a
            different movie path (nothing is recorded then).
        """
        if source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {source!r}")
        state: SeenState
        with self._transaction(f"recording exposure {exposure_id!r} as seen") as con:
            row = con.execute(
                "SELECT state, movie_path, metadata_path FROM exposures WHERE exposure_id = ?",
                [exposure_id],
            ).fetchone()
            if row is None:
                con.execute(
                    "INSERT INTO exposures (exposure_id, movie_path, source, metadata_path, "
                    "state, seen_at, outputs, timings_s, problems) "
                    "VALUES (?, ?, ?, ?, 'seen', ?, '{}', '{}', '[]')",
                    [exposure_id, movie_path, source, metadata_path, _now()],
                )
                state = "new"
            elif row[1] != movie_path:
                state = "conflict"
            else:
                if row[2] is None and metadata_path is not None:
                    con.execute(
                        "UPDATE exposures SET metadata_path = ? WHERE exposure_id = ?",
                        [metadata_path, exposure_id],
                    )
                state = "pending" if row[0] == "seen" else row[0]
        return state

    def is_done(self, exposure_id: str, *, stage: str = "exposure", params_hash: str) -> bool:
        """Whether a result with this key is committed."""
        _, rows = self._query(
            f"looking up exposure {exposure_id!r}",
            "SELECT count(*) FROM results WHERE exposure_id = ? AND stage = ? AND params_hash = ?",
            [exposure_id, stage, params_hash],
        )
        return bool(rows[0][0])

    def commit_exposure(
        self,
        record: ExposureRecord,
        *,
        params_hash: str,
        stage: str = "exposure",
        latency_s: float | None = None,
        problems: Sequence[str] = (),
    ) -> bool:
        """Commit an exposure's record in one transaction; False when its key was committed.

        The exposure's row becomes done with the record's gate status; its motion, ctf and flags
        rows are replaced by the record's; a results row keeps the record under the key
        (exposure, ``stage``, ``params_hash``). Then the joined row is published and
        ``micrographs_ctf.star`` rewritten.
        """
        eid = record.exposure_id
        with self._transaction(f"committing exposure {eid!r}") as con:
            row = con.execute(
                "SELECT (SELECT count(*) FROM results WHERE exposure_id = $id AND stage = $stage "
                "AND params_hash = $hash), (SELECT state FROM exposures WHERE exposure_id = $id)",
                {"id": eid, "stage": stage, "hash": params_hash},
            ).fetchone()
            assert row is not None
            written = row[0] == 0
            if written:
                self._write_record(con, record, row[1], params_hash, stage, latency_s, problems)
        if written:
            if self._publisher is not None:
                self._publisher.publish(b"exposure", self.exposure_row(eid))
            self._ctf_star_stale = True
        self._rewrite_ctf_star()
        return written

    def _write_record(
        self,
        con: duckdb.DuckDBPyConnection,
        record: ExposureRecord,
        state: str | None,
        params_hash: str,
        stage: str,
        latency_s: float | None,
        problems: Sequence[str],
    ) -> None:
        eid = record.exposure_id
        now = _now()
        if state is None:
            # Committed without having been recorded as seen (e.g. by a one-off command).
            con.execute(
                "INSERT INTO exposures (exposure_id, movie_path, state, seen_at) "
                "VALUES (?, ?, 'seen', ?)",
                [eid, record.movie_path, now],
            )
        con.execute(
            "UPDATE exposures SET state = 'done', gate_status = ?, done_at = ?, latency_s = ?, "
            "n_frames = ?, pixel_size_angstrom = ?, voltage_kv = ?, cs_mm = ?, "
            "amplitude_contrast = ?, dose_e_per_a2 = ?, device = ?, outputs = ?, timings_s = ?, "
            "problems = ?, acquisition = ? WHERE exposure_id = ?",
            [
                record.status,
                now,
                latency_s,
                record.n_frames,
                record.pixel_size_angstrom,
                record.voltage_kv,
                record.cs_mm,
                record.amplitude_contrast,
                record.dose_e_per_a2,
                record.device,
                json.dumps(record.outputs),
                dumps(record.timings_s),
                json.dumps(list(problems)),
                None if record.metadata is None else record.metadata.model_dump_json(),
                eid,
            ],
        )
        if state is not None and state != "seen":
            # A commit under new parameters replaces the previous commit's rows.
            for table in ("motion", "ctf", "picking", "picks", "flags"):
                con.execute(f"DELETE FROM {table} WHERE exposure_id = ?", [eid])
            delete_causal(con, eid)
        motion = record.motion
        if motion is not None:
            patches = motion.patches or (None, None)
            con.execute(
                "INSERT INTO motion VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    eid,
                    motion.total_drift_px,
                    motion.max_frame_shift_px,
                    motion.accumulated_motion_total_angstrom,
                    motion.accumulated_motion_early_angstrom,
                    motion.accumulated_motion_late_angstrom,
                    motion.local_motion_rms_px,
                    patches[0],
                    patches[1],
                    motion.measured_dose_e_per_a2,
                    motion.n_defect_pixels,
                    motion.n_hot_pixels,
                    motion.iterations,
                    dumps(motion.shifts_px),
                ],
            )
        ctf = record.ctf
        if ctf is not None:
            con.execute(
                "INSERT INTO ctf VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    eid,
                    ctf.defocus_u_angstrom,
                    ctf.defocus_v_angstrom,
                    ctf.defocus_angle_deg,
                    ctf.defocus_angstrom,
                    ctf.astigmatism_angstrom,
                    ctf.phase_shift_deg,
                    ctf.fit_resolution_angstrom,
                    ctf.figure_of_merit,
                    ctf.ice_thickness_nm,
                    ctf.ice_thickness_rings_nm,
                    ctf.ice_thickness_ice_ring_nm,
                    ctf.defocus_sigma_angstrom,
                    ctf.astigmatism_sigma_angstrom,
                    ctf.angle_sigma_deg,
                    ctf.phase_shift_sigma_deg,
                    ctf.ice_thickness_sigma_nm,
                    ctf.search_defocus_min_um,
                    ctf.search_defocus_max_um,
                    ctf.at_search_edge,
                    ctf.supported,
                    json.dumps(ctf.warnings),
                ],
            )
        picking = record.picking
        if picking is not None:
            con.execute(
                "INSERT INTO picking VALUES (?, ?, ?, ?, ?, ?)",
                [
                    eid,
                    picking.n_particles,
                    picking.particle_diameter_angstrom,
                    picking.picker,
                    picking.mean_score,
                    picking.box_px,
                ],
            )
            if picking.picks_xy_px:
                con.executemany(
                    "INSERT INTO picks VALUES (?, ?, ?, ?, ?)",
                    [
                        [eid, i, float(xy[0]), float(xy[1]), float(score)]
                        for i, (xy, score) in enumerate(
                            zip(picking.picks_xy_px, picking.scores, strict=True)
                        )
                    ],
                )
        if record.causal is not None:
            write_inputs(con, eid, record.causal)
        for position, flag in enumerate(record.flags):
            con.execute(
                "INSERT INTO flags VALUES (?, ?, ?, ?, ?, ?, ?)",
                [eid, position, flag.code, flag.severity, flag.message, flag.value, flag.limit],
            )
        con.execute(
            "INSERT INTO results (exposure_id, stage, params_hash, run_id, committed_at, "
            "record_json) VALUES (?, ?, ?, ?, ?, ?)",
            [eid, stage, params_hash, self._run_id, now, record.model_dump_json()],
        )

    def _rewrite_ctf_star(self) -> None:
        if self._ctf_star_path is None or not self._ctf_star_stale:
            return
        from causalscope.daemon.store._ctf_star import (
            rewrite_ctf_star,  # pandas: only for stores that write
        )

        try:
            rewrite_ctf_star(self._con, self._ctf_star_path)
        except (OSError, duckdb.Error) as exc:
            # The commit stands; the file is rewritten on the next call (a retry included).
            raise StoreError(
                "Cannot write micrographs_ctf.star",
                f"{self._ctf_star_path}: {exc} (the commit to {self._path} stands; the file is "
                "rewritten at the next commit)",
                path=self._ctf_star_path,
            ) from exc
        self._ctf_star_stale = False

    def quarantine(self, *, exposure_id: str | None, origin: str, code: str, reason: str) -> None:
        """Record rejected input with its reason; a known exposure not yet done is quarantined.

        A done exposure stays done (e.g. when a second movie claims its id); the quarantine row
        still records what was rejected.
        """
        now = _now()
        with self._transaction(f"quarantining {origin!r}") as con:
            row = con.execute(
                "INSERT INTO quarantine (exposure_id, origin, code, reason, run_id, "
                "quarantined_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                [exposure_id, origin, code, reason, self._run_id, now],
            )
            message = self._fetch_dict(row, "quarantine")
            if exposure_id is not None:
                con.execute(
                    "UPDATE exposures SET state = 'quarantined' "
                    "WHERE exposure_id = ? AND state = 'seen'",
                    [exposure_id],
                )
        if self._publisher is not None:
            self._publisher.publish(b"quarantine", message)

    def mark_attempt(self, exposure_id: str) -> int:
        """Count one more processing attempt of a seen exposure; returns the count."""
        with self._transaction(f"counting an attempt of {exposure_id!r}") as con:
            row = con.execute(
                "UPDATE exposures SET attempts = attempts + 1 WHERE exposure_id = ? "
                "RETURNING attempts",
                [exposure_id],
            ).fetchone()
        if row is None:
            raise ValueError(f"{self._path}: exposure {exposure_id!r} was never recorded as seen")
        return int(row[0])

    def log_event(self, kind: str, message: str, **data: Any) -> None:
        """Append to the session's log (and publish it)."""
        with self._transaction(f"logging a {kind!r} event") as con:
            row = con.execute(
                "INSERT INTO events (logged_at, run_id, kind, message, data) "
                "VALUES (?, ?, ?, ?, ?) RETURNING *",
                [_now(), self._run_id, kind, message, dumps(data)],
            )
            event = self._fetch_dict(row, "events")
        if self._publisher is not None:
            self._publisher.publish(b"event", event)

    def commit_causal(self, update: CausalUpdate) -> None:
        """Store one causal-model update and publish it (topic ``causal``)."""
        with self._transaction(f"storing the causal update of {update.exposure_id!r}") as con:
            write_update(con, update)
        if self._publisher is not None:
            self._publisher.publish(b"causal", update.to_dict())

    def causal_history(self) -> tuple[list[tuple[str, CausalInputs]], set[str]]:
        """Stored causal inputs in commit order, and the exposures whose update is stored."""
        if self._closed:
            raise StoreError("Session store closed", f"{self._path}: reading causal inputs")
        try:
            return read_inputs(self._con), stored_updates(self._con)
        except duckdb.Error as exc:
            raise StoreError(
                "Session database read failed",
                f"{self._path}: reading the causal inputs failed: {exc}",
                path=self._path,
            ) from exc

    def add_label(self, exposure_id: str, label: str, by: str = "operator") -> None:
        """Record an operator's verdict (``"accept"`` or ``"reject"``) on an exposure."""
        if label not in _LABELS:
            raise ValueError(f"label must be one of {_LABELS}, got {label!r}")
        with self._transaction(f"labelling {exposure_id!r}") as con:
            row = con.execute(
                "INSERT INTO labels (exposure_id, label, labelled_at, labelled_by) "
                "VALUES (?, ?, ?, ?) RETURNING *",
                [exposure_id, label, _now(), by],
            )
            message = self._fetch_dict(row, "labels")
        if self._publisher is not None:
            self._publisher.publish(b"label", message)

    # -- reads ------------------------------------------------------------------------------

    @staticmethod
    def _fetch_dict(cursor: duckdb.DuckDBPyConnection, table: str) -> dict[str, Any]:
        columns = [d[0] for d in cursor.description or ()]
        row = cursor.fetchone()
        assert row is not None
        return row_dict(columns, row, schema.JSON_COLUMNS.get(table, ()))

    def _query(
        self, what: str, sql: str, params: Any = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Columns and rows of a read on the caller's thread; StoreError when it fails."""
        if self._closed:
            raise StoreError("Session store closed", f"{self._path}: {what} after close()")
        try:
            cursor = self._con.execute(sql, params)
            columns = [d[0] for d in cursor.description or ()]
            return columns, cursor.fetchall()
        except duckdb.Error as exc:
            raise StoreError(
                "Session database read failed",
                f"{self._path}: {what} failed: {exc}",
                path=self._path,
            ) from exc

    def announce_control(self, endpoint: str, token: str) -> None:
        """Add the session's control endpoint and token to the endpoints file."""
        write_endpoints(
            self._path,
            Endpoints(
                database=str(self._path),
                pid=os.getpid(),
                publish=self.publish_endpoint,
                query=self.query_endpoint,
                control=endpoint,
                token=token,
            ),
        )
        self._endpoints_written = True

    def publish(self, topic: bytes, payload: dict[str, Any]) -> None:
        """Publish ``payload`` on ``topic`` (``status`` heartbeats); never blocks."""
        if self._publisher is not None:
            self._publisher.publish(topic, payload)

    def exposure_row(self, exposure_id: str) -> dict[str, Any] | None:
        """An exposure's row with ``motion``, ``ctf`` (objects or None) and ``flags`` (a list):
        what is published after its commit. JSON columns are decoded, times are ISO text."""
        columns, rows = self._query(
            f"reading exposure {exposure_id!r}", _EXPOSURE_ROW_SQL, {"id": exposure_id}
        )
        if not rows:
            return None
        out = row_dict(
            columns,
            rows[0],
            {*schema.JSON_COLUMNS["exposures"], "motion", "ctf", "picking", "flags"},
        )
        for table in ("motion", "ctf", "picking"):
            if out[table] is not None:
                out[table].pop("exposure_id")
        out["flags"] = [
            {k: v for k, v in flag.items() if k not in {"exposure_id", "position"}}
            for flag in out["flags"] or []
        ]
        return out

    def pending(self) -> list[PendingExposure]:
        """Exposures seen, neither done nor quarantined, in the order they were seen."""
        _, rows = self._query(
            "listing pending exposures",
            "SELECT exposure_id, movie_path, source, metadata_path FROM exposures "
            "WHERE state = 'seen' ORDER BY seen_at, exposure_id",
        )
        return [
            PendingExposure(
                exposure_id=eid,
                movie_path=Path(movie),
                source=str(source),
                metadata_path=None if meta is None else Path(meta),
            )
            for eid, movie, source, meta in rows
        ]

    def counts(self) -> dict[str, int]:
        """Exposures by state and gate status, quarantine records, events and results."""
        columns, rows = self._query("counting exposures", COUNTS_SQL)
        return {name: int(value) for name, value in zip(columns, rows[0], strict=True)}
