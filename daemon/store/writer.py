"""The session store: the only writer of a session's DuckDB file.

Every write is one transaction on the caller's thread: an exposure is recorded when a source
sees it (before it is processed), and its record is committed with the idempotency key
(exposure, stage, parameters hash), so that a restart neither loses nor redoes work. After each
commit the committed rows are published (:mod:`.publish`) and ``micrographs_ctf.star`` is
rewritten (:mod:`.exporters`). Readers use the query endpoint (:mod:`.query_server`) while the
daemon runs, the file read-only after it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import zmq

from causalscope.daemon.client.endpoints import Endpoints, remove_endpoints, write_endpoints
from causalscope.daemon.client.errors import StoreError
from causalscope.daemon.store import evaluation, reads, schema, scores
from causalscope.daemon.store.causal import read_inputs, stored_updates, write_update
from causalscope.daemon.store.connection import connect_writer, release_writer, transaction
from causalscope.daemon.store.exporters import CtfStarExporter
from causalscope.daemon.store.migrate import prepare_schema
from causalscope.daemon.store.publish import Publisher
from causalscope.daemon.store.query_server import QueryServer
from causalscope.daemon.store.reads import PendingExposure
from causalscope.daemon.store.rows import write_record
from causalscope.daemon.store.summary import COUNTS_SQL
from causalscope.daemon.store.tables import encode_json

if TYPE_CHECKING:
    from causalscope.actors._evaluation_results import EvaluationUpdate
    from causalscope.actors.scoring import ScoredSubject
    from causalscope.models.causal import CausalUpdate
    from causalscope.models.records import CausalInputs, ExposureRecord

__all__ = ["PendingExposure", "SeenState", "SessionStore"]

SeenState = Literal["new", "pending", "done", "quarantined", "conflict"]

_SOURCES = ("watcher", "stream")
_LABELS = ("accept", "reject")
_CLASS_LABELS = ("select", "reject")


def _now() -> dt.datetime:
    # TIMESTAMP columns hold UTC without a zone (DuckDB hands TIMESTAMPTZ to Python via pytz).
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class SessionStore:
    """One session's DuckDB file, its publish socket and its query endpoint.

    Parameters
    ----------
    path
        The database (``SESSION.duckdb``); created with the schema when missing, migrated when
        written by an older schema.
    publish_address
        ZeroMQ address for the PUB socket (``tcp://127.0.0.1:0`` binds a free port), or None.
    query_address
        ZeroMQ address for the query endpoint (REP), or None.
    ctf_star_path
        ``micrographs_ctf.star`` to rewrite after every commit, or None.
    publish_high_water_mark
        Messages queued per subscriber before the PUB socket drops.
    memory_limit_mb
        Memory DuckDB may hold for this file (its cache of the file's blocks, the commits not
        yet checkpointed, the queries); None leaves DuckDB's default (80% of the machine's
        memory, which a long session's growing file would fill with its cache).

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
        memory_limit_mb: int | None = None,
    ) -> None:
        self._path = Path(path)
        self._ctf_star = None if ctf_star_path is None else CtfStarExporter(ctf_star_path, path)
        self._run_id: int | None = None
        self._closed = False
        self._publisher: Publisher | None = None
        self._server: QueryServer | None = None
        self._context: zmq.Context | None = None
        self._endpoints_written = False
        #: The schema version the file was migrated from when it was opened, or None.
        self.migrated_from: int | None = None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._con = connect_writer(self._path)
        try:
            if memory_limit_mb is not None:
                self._set_memory_limit(memory_limit_mb)
            with self._transaction("creating the schema") as con:
                self.migrated_from = prepare_schema(con, self._path, _now())
            if publish_address is not None or query_address is not None:
                self._context = context = zmq.Context()
                if publish_address is not None:
                    self._publisher = Publisher(
                        context, publish_address, high_water_mark=publish_high_water_mark
                    )
                if query_address is not None:
                    self._server = QueryServer(
                        context, query_address, self._con.cursor(), self._path.name
                    )
            self._write_endpoints()
        except BaseException:
            self.close()
            raise

    def _set_memory_limit(self, mb: int) -> None:
        if not mb > 0:
            raise ValueError(f"memory_limit_mb must be positive, got {mb!r}")
        try:
            self._con.execute(f"SET memory_limit = '{int(mb)}MiB'")
        except duckdb.Error as exc:
            raise StoreError(
                "Cannot limit the session database's memory",
                f"{self._path}: memory_limit_mb = {mb}: {exc}",
                path=self._path,
            ) from exc

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
        return None if self._server is None else self._server.endpoint

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

    def _write_endpoints(self, control: str | None = None, token: str | None = None) -> None:
        write_endpoints(
            self._path,
            Endpoints(
                database=str(self._path),
                pid=os.getpid(),
                publish=self.publish_endpoint,
                query=self.query_endpoint,
                control=control,
                token=token,
            ),
        )
        self._endpoints_written = True

    def announce_control(self, endpoint: str, token: str) -> None:
        """Add the session's control endpoint and token to the endpoints file."""
        self._write_endpoints(endpoint, token)

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
        release_writer(self._path)

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

    def _transaction(
        self, what: str
    ) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """One transaction; rolled back on any error, storage errors raised as StoreError."""
        if self._closed:
            raise StoreError("Session store closed", f"{self._path}: {what} after close()")
        return transaction(self._con, self._path, what)

    def _insert(self, what: str, table: str, values: dict[str, Any]) -> dict[str, Any]:
        """Insert one row in its own transaction; the row as stored (JSON decoded)."""
        spec = schema.table(table)
        with self._transaction(what) as con:
            return reads.fetch_dict(
                con.execute(spec.insert_sql(values, returning=True), values), table
            )

    def _publish(self, topic: bytes, payload: Any) -> None:
        if self._publisher is not None:
            self._publisher.publish(topic, payload)

    def start_run(
        self, *, settings_json: str, version: str, command_line: list[str], params_hash: str
    ) -> int:
        """Record a start of the daemon with its resolved settings; returns the run's id."""
        json.loads(settings_json)  # a ValueError here, not a half-valid JSON column
        with self._transaction("recording the run") as con:
            row = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchone()
            assert row is not None
            run_id = int(row[0])
            values = {
                "run_id": run_id,
                "started_at": _now(),
                "version": version,
                "command_line": json.dumps(command_line),
                "settings_json": settings_json,
                "params_hash": params_hash,
            }
            con.execute(schema.RUNS_TABLE.insert_sql(values), values)
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
                values = {
                    "exposure_id": exposure_id,
                    "movie_path": movie_path,
                    "source": source,
                    "metadata_path": metadata_path,
                    "state": "seen",
                    "seen_at": _now(),
                    "outputs": "{}",
                    "timings_s": "{}",
                    "problems": "[]",
                }
                con.execute(schema.EXPOSURES_TABLE.insert_sql(values), values)
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
                write_record(
                    con,
                    record,
                    state=row[1],
                    params_hash=params_hash,
                    stage=stage,
                    run_id=self._run_id,
                    now=_now(),
                    latency_s=latency_s,
                    problems=problems,
                )
        if written:
            self._publish(b"exposure", self.exposure_row(eid))
            if self._ctf_star is not None:
                self._ctf_star.changed()
        if self._ctf_star is not None:
            self._ctf_star.rewrite(self._con)
        return written

    def quarantine(self, *, exposure_id: str | None, origin: str, code: str, reason: str) -> None:
        """Record rejected input with its reason; a known exposure not yet done is quarantined.

        A done exposure stays done (e.g. when a second movie claims its id); the quarantine row
        still records what was rejected.
        """
        values = {
            "exposure_id": exposure_id,
            "origin": origin,
            "code": code,
            "reason": reason,
            "run_id": self._run_id,
            "quarantined_at": _now(),
        }
        spec = schema.QUARANTINE_TABLE
        with self._transaction(f"quarantining {origin!r}") as con:
            row = con.execute(spec.insert_sql(values, returning=True), values)
            message = reads.fetch_dict(row, "quarantine")
            if exposure_id is not None:
                con.execute(
                    "UPDATE exposures SET state = 'quarantined' "
                    "WHERE exposure_id = ? AND state = 'seen'",
                    [exposure_id],
                )
        self._publish(b"quarantine", message)

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
        values = {
            "logged_at": _now(),
            "run_id": self._run_id,
            "kind": kind,
            "message": message,
            "data": encode_json(data),
        }
        self._publish(b"event", self._insert(f"logging a {kind!r} event", "events", values))

    def commit_causal(self, update: CausalUpdate) -> None:
        """Store one causal-model update and publish it (topic ``causal``)."""
        with self._transaction(f"storing the causal update of {update.exposure_id!r}") as con:
            write_update(con, update)
        self._publish(b"causal", update.to_dict())

    def add_label(self, exposure_id: str, label: str, by: str = "operator") -> None:
        """Record an operator's verdict (``"accept"`` or ``"reject"``) on an exposure."""
        if label not in _LABELS:
            raise ValueError(f"label must be one of {_LABELS}, got {label!r}")
        values = {
            "exposure_id": exposure_id,
            "label": label,
            "labelled_at": _now(),
            "labelled_by": by,
        }
        self._publish(b"label", self._insert(f"labelling {exposure_id!r}", "labels", values))

    def commit_evaluation(self, update: EvaluationUpdate) -> bool:
        """Store one update of the running reconstructions and publish it (topic
        ``evaluation``); False when its version was stored already."""
        with self._transaction(f"storing reconstruction update {update.version}") as con:
            written = evaluation.write_evaluation(con, update, run_id=self._run_id, now=_now())
        if written:
            self._publish(b"evaluation", update.to_dict())
        return written

    def commit_score(self, scored: ScoredSubject) -> None:
        """Store a subject's score and obligations (replacing an earlier scoring) and publish
        it (topic ``score``)."""
        with self._transaction(f"storing the score of {scored.kind} {scored.subject!r}") as con:
            scores.write_score(con, scored, run_id=self._run_id, now=_now())
        self._publish(b"score", scored.to_dict())

    def score_history(self) -> list[tuple[float | None, ...]]:
        """The scored exposures' (V without Meta, weighted particles, logic, novelty, impact,
        delta_repro) in order: what a restart replays."""
        with self._reading("reading the scores"):
            return scores.score_history(self._con)

    def labelled_components(self) -> list[tuple[dict[str, float | None], bool]]:
        """Each labelled, scored exposure's components and whether it was accepted."""
        with self._reading("reading the labelled scores"):
            return scores.labelled_components(self._con)

    def commit_weights(self, **learned: Any) -> int:
        """Store weights learned from the labels (:func:`.scores.write_weights`); their
        version."""
        with self._transaction("storing the learned score weights") as con:
            return scores.write_weights(con, now=_now(), **learned)

    def latest_weights(self) -> tuple[int, dict[str, float], int] | None:
        """The last learned weights: (version, weights, labels learned from), or None."""
        with self._reading("reading the learned score weights"):
            return scores.latest_weights(self._con)

    def unscored_records(self) -> list[ExposureRecord]:
        """Done exposures without a score (commit order): left by a kill between the two."""
        from causalscope.models.records import ExposureRecord

        with self._reading("reading the records not scored"):
            texts = scores.unscored_records(self._con)
        return [ExposureRecord.model_validate_json(text) for text in texts]

    def add_class_label(self, class_index: int, label: str, by: str = "operator") -> None:
        """Record an operator's ``"select"`` or ``"reject"`` of a 2D class."""
        if label not in _CLASS_LABELS:
            raise ValueError(f"class label must be one of {_CLASS_LABELS}, got {label!r}")
        if class_index < 0:
            raise ValueError(f"class index must be >= 0, got {class_index}")
        values = {
            "class_index": int(class_index),
            "label": label,
            "labelled_at": _now(),
            "labelled_by": by,
        }
        row = self._insert(f"labelling class {class_index}", "class_labels", values)
        self._publish(b"class_label", row)

    def evaluation_history(self) -> tuple[list[tuple[str, str, int]], int | None, dict[int, str]]:
        """What a restarted evaluator needs: the done exposures' particle STARs (commit
        order), the last stored update's version, and the class labels."""
        with self._reading("reading the reconstructions' history"):
            return (
                evaluation.particle_stars(self._con),
                evaluation.stored_version(self._con),
                evaluation.class_labels(self._con),
            )

    def publish(self, topic: bytes, payload: dict[str, Any]) -> None:
        """Publish ``payload`` on ``topic`` (``status`` heartbeats); never blocks."""
        self._publish(topic, payload)

    # -- reads ------------------------------------------------------------------------------

    def _query(
        self, what: str, sql: str, params: Any = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Columns and rows of a read on the caller's thread; StoreError when it fails."""
        with self._reading(what):
            cursor = self._con.execute(sql, params)
            columns = [d[0] for d in cursor.description or ()]
            return columns, cursor.fetchall()

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """A read on the caller's thread: StoreError naming the file and ``what`` when the
        store is closed or the read fails."""
        if self._closed:
            raise StoreError("Session store closed", f"{self._path}: {what} after close()")
        try:
            yield
        except duckdb.Error as exc:
            raise StoreError(
                "Session database read failed",
                f"{self._path}: {what} failed: {exc}",
                path=self._path,
            ) from exc

    def causal_history(self) -> tuple[list[tuple[str, CausalInputs]], set[str]]:
        """Stored causal inputs in commit order, and the exposures whose update is stored."""
        with self._reading("reading the causal inputs"):
            return read_inputs(self._con), stored_updates(self._con)

    def exposure_row(self, exposure_id: str) -> dict[str, Any] | None:
        """An exposure's row as published after its commit (a row of the view
        ``published_exposures``): JSON decoded, times as ISO text; None when unknown."""
        with self._reading(f"reading exposure {exposure_id!r}"):
            return reads.exposure_row(self._con, exposure_id)

    def pending(self) -> list[PendingExposure]:
        """Exposures seen, neither done nor quarantined, in the order they were seen."""
        _, rows = self._query("listing pending exposures", reads.PENDING_SQL)
        return reads.pending_exposures(rows)

    def counts(self) -> dict[str, int]:
        """Exposures by state and gate status, quarantine records, events and results."""
        columns, rows = self._query("counting exposures", COUNTS_SQL)
        return {name: int(value) for name, value in zip(columns, rows[0], strict=True)}
