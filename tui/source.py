"""Where the dashboard's data comes from: a running session, or a finished one.

A :class:`SessionSource` gives the session's history at once (:meth:`~SessionSource.history`),
then follows it (:meth:`~SessionSource.follow`, a blocking loop run by a worker thread that
hands each published message to ``post(topic, payload)``), and carries out the operator's
actions (:meth:`~SessionSource.act`). :class:`LiveSource` reads a running session through its
PUB socket, query endpoint and control endpoint; :class:`RecordedSource` reads a finished
session's DuckDB file read-only, or rows held in memory (tests, benchmarks).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from causalscope.daemon.control import ControlError, control_request
from causalscope.daemon.store.endpoints import Endpoints, read_endpoints
from causalscope.daemon.store.query import QueryResult, query_endpoint
from causalscope.daemon.store.summary import CAUSES_SQL
from causalscope.models.errors import CausalscopeError

__all__ = [
    "ALERTS_SQL",
    "CAUSAL_SQL",
    "CAUSES_SQL",
    "HISTORY_SQL",
    "LABELS_SQL",
    "ActionSink",
    "LiveSource",
    "Post",
    "RecordedSource",
    "SessionSource",
    "Snapshot",
    "decode_exposure_row",
]

#: ``post(topic, payload)``: how :meth:`SessionSource.follow` hands on what it receives.
Post = Callable[[str, dict[str, Any]], None]
#: ``sink(action, params) -> reply``: carries out actions for a :class:`RecordedSource` in tests.
ActionSink = Callable[[str, dict[str, Any]], dict[str, Any]]

# Every exposure joined as SessionStore.exposure_row publishes it, in one pass (joins, not one
# subquery per exposure), without the per-frame shifts (the dashboard does not show them).
_HISTORY_SELECT = """
SELECT e.*,
    CASE WHEN m.exposure_id IS NULL THEN NULL ELSE to_json(m) END AS motion,
    CASE WHEN c.exposure_id IS NULL THEN NULL ELSE to_json(c) END AS ctf,
    CASE WHEN p.exposure_id IS NULL THEN NULL ELSE to_json(p) END AS picking,
    fl.flags AS flags
FROM exposures AS e
LEFT JOIN (SELECT * EXCLUDE (shifts_px) FROM motion) AS m ON m.exposure_id = e.exposure_id
LEFT JOIN ctf AS c ON c.exposure_id = e.exposure_id
LEFT JOIN picking AS p ON p.exposure_id = e.exposure_id
LEFT JOIN (
    SELECT exposure_id, to_json(list({'code': code, 'severity': severity, 'message': message,
        'value': value, 'limit_value': limit_value} ORDER BY position)) AS flags
    FROM flags GROUP BY exposure_id
) AS fl ON fl.exposure_id = e.exposure_id
"""
#: The whole history, in the order exposures were seen.
HISTORY_SQL = _HISTORY_SELECT + "ORDER BY e.seen_at, e.exposure_id"
# What changed since the history was read (a commit can fall between history and subscribe).
_CATCH_UP_SQL = (
    _HISTORY_SELECT + "WHERE e.done_at >= $1::TIMESTAMP OR e.seen_at >= $1::TIMESTAMP "
    "ORDER BY e.seen_at, e.exposure_id"
)
#: The daemon's alerts (events of kind ``alert``), oldest first.
ALERTS_SQL = (
    "SELECT id, logged_at, kind, message, data FROM events WHERE kind = 'alert' ORDER BY id"
)
#: Operators' labels, oldest first (the latest per exposure wins).
LABELS_SQL = "SELECT exposure_id, label, labelled_at, labelled_by FROM labels ORDER BY id"
_QUARANTINE_SQL = "SELECT * FROM quarantine ORDER BY id"
# Files written before the causal model have none of its tables.
_HAS_CAUSAL_SQL = (
    "SELECT count(*) FROM information_schema.tables "
    "WHERE table_name IN ('causal', 'causal_shares', 'causal_ranking')"
)
# Each exposure's verdict with its shares, in the shape of a published ``causal`` update (less
# the ranking): ``model_index`` is the update's ``index``.
_CAUSAL_SELECT = """
SELECT c.exposure_id, c.model_index AS "index", c.regime, c.regime_change,
    c.observed_resolution_angstrom, c.best_resolution_angstrom, c.predicted_loss_angstrom,
    c.predicted_loss_sd_angstrom, c.unexplained_angstrom, c.dominant_cause, c.converged,
    sh.shares AS shares
FROM causal AS c
LEFT JOIN (
    SELECT exposure_id, to_json(list({'cause': cause, 'share_angstrom': share_angstrom,
        'sd_angstrom': sd_angstrom} ORDER BY cause)) AS shares
    FROM causal_shares GROUP BY exposure_id
) AS sh ON sh.exposure_id = c.exposure_id
"""
#: The causal model's verdict on each exposure, in the order it learned them.
CAUSAL_SQL = _CAUSAL_SELECT + "ORDER BY c.model_index, c.exposure_id"
_CAUSAL_CATCH_UP_SQL = (
    _CAUSAL_SELECT + "WHERE list_contains($1::VARCHAR[], c.exposure_id) "
    "ORDER BY c.model_index, c.exposure_id"
)
_RECORDED_STATUS_SQL = (
    "SELECT (SELECT name FROM session LIMIT 1), "
    "epoch(max(coalesce(done_at, seen_at))) - epoch(min(seen_at)), count(*), "
    "count(*) FILTER (WHERE state = 'done'), "
    "count(*) FILTER (WHERE gate_status = 'pass' AND state = 'done'), "
    "count(*) FILTER (WHERE gate_status = 'warn' AND state = 'done'), "
    "count(*) FILTER (WHERE gate_status = 'fail' AND state = 'done'), "
    "count(*) FILTER (WHERE state = 'quarantined'), count(*) FILTER (WHERE state = 'seen') "
    "FROM exposures"
)
_JSON_FIELDS = (
    "outputs",
    "timings_s",
    "problems",
    "acquisition",
    "motion",
    "ctf",
    "picking",
    "flags",
)


@dataclass(frozen=True)
class Snapshot:
    """A session's history as the dashboard loads it.

    Attributes
    ----------
    rows
        Exposure rows (as published on ``exposure``), in the order they were seen.
    alerts
        Alert events (``kind == "alert"``), oldest first.
    labels
        The latest operator label per exposure id.
    status
        The session's status (as published on ``status``), or None when none is known yet.
    quarantine
        Quarantine rows, oldest first.
    causes
        The causal model's latest ranking of the session's causes (rank 1 first, as
        :data:`CAUSES_SQL` reads it); None when the session has no causal model (a file
        written before it).
    causal
        The causal model's verdict on each exposure it learned from (as published on
        ``causal``, without the ranking), in the order it learned them.
    """

    rows: list[dict[str, Any]]
    alerts: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    status: dict[str, Any] | None = None
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    causes: list[dict[str, Any]] | None = None
    causal: list[dict[str, Any]] = field(default_factory=list)


class SessionSource(Protocol):
    """What the dashboard reads and asks; see the module docstring."""

    #: The session's name, for titles.
    name: str
    #: True for a running session (actions possible), False for a finished one.
    live: bool

    def history(self) -> Snapshot:
        """The session so far; raises :class:`CausalscopeError` when it cannot be read."""
        ...

    def follow(self, post: Post, stop: threading.Event) -> None:
        """Hand every published message to ``post`` until ``stop`` is set."""
        ...

    def act(self, action: str, **params: Any) -> dict[str, Any]:
        """Carry out one control action; raises :class:`ControlError` when refused."""
        ...


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def decode_exposure_row(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """One row of :data:`HISTORY_SQL` in the published form (JSON text decoded)."""
    out = dict(zip(columns, row, strict=True))
    for name in _JSON_FIELDS:
        if name in out:
            out[name] = _decoded(out[name])
    out["flags"] = out.get("flags") or []
    for part in ("motion", "ctf", "picking"):
        if isinstance(out.get(part), dict):
            out[part].pop("exposure_id", None)
    return out


def _dicts(result: QueryResult, json_fields: Iterable[str] = ()) -> list[dict[str, Any]]:
    decode = set(json_fields)
    return [
        {k: _decoded(v) if k in decode else v for k, v in zip(result.columns, row, strict=True)}
        for row in result.rows
    ]


def _latest_labels(result: QueryResult) -> dict[str, str]:
    return {str(row[0]): str(row[1]) for row in result.rows}


Select = Callable[[str, Sequence[Any] | None], QueryResult]


def _has_causal(select: Select) -> bool:
    return int(select(_HAS_CAUSAL_SQL, None).rows[0][0]) == 3


def _read_snapshot(select: Select, status: dict[str, Any] | None) -> Snapshot:
    history = select(HISTORY_SQL, None)
    causes: list[dict[str, Any]] | None = None
    causal: list[dict[str, Any]] = []
    if _has_causal(select):
        causes = _dicts(select(CAUSES_SQL, None))
        causal = _dicts(select(CAUSAL_SQL, None), ("shares",))
    return Snapshot(
        rows=[decode_exposure_row(history.columns, row) for row in history.rows],
        alerts=_dicts(select(ALERTS_SQL, None), ("data",)),
        labels=_latest_labels(select(LABELS_SQL, None)),
        status=status,
        quarantine=_dicts(select(_QUARANTINE_SQL, None)),
        causes=causes,
        causal=causal,
    )


def _not_running(name: str) -> ControlError:
    return ControlError(
        "The session is not running",
        f"the session is not running: {name} is a finished session, opened read-only; "
        "actions need the running daemon",
    )


class RecordedSource:
    """A finished session: its DuckDB file opened read-only, or rows held in memory.

    Parameters
    ----------
    snapshot
        The session's history.
    name
        The session's name.
    action_sink
        Carries out actions (tests); without one every action raises "the session is not
        running".
    messages
        ``(topic, payload)`` pairs that :meth:`follow` posts once, in order (tests).
    live
        Show it as a running session (tests and benchmarks that replay one).
    """

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        name: str = "session",
        action_sink: ActionSink | None = None,
        messages: Sequence[tuple[str, dict[str, Any]]] = (),
        live: bool = False,
    ) -> None:
        self.name = name
        self.live = live
        self._snapshot = snapshot
        self._sink = action_sink
        self._messages = list(messages)

    @classmethod
    def open(cls, path: Path, *, action_sink: ActionSink | None = None) -> RecordedSource:
        """Read a finished session's file read-only (all of it, at once).

        Raises
        ------
        CausalscopeError
            The file is missing, not a session, or held by a running daemon.
        """
        import duckdb

        from causalscope.daemon.store.errors import StoreError
        from causalscope.daemon.store.query import run_select
        from causalscope.models.errors import InputError

        path = Path(path)
        if not path.is_file():
            raise InputError("Session not found", f"{path} does not exist or is not a file")
        try:
            con = duckdb.connect(
                str(path), read_only=True, config={"enable_external_access": False}
            )
        except duckdb.Error as exc:
            raise StoreError(
                "Cannot open the session database",
                f"{path}: {exc} (a running session is read through its endpoints: "
                "`causalscope tui --connect` with its endpoints file)",
                path=path,
            ) from exc
        try:

            def select(sql: str, params: Sequence[Any] | None) -> QueryResult:
                return run_select(con, sql, params)

            counts = select(_RECORDED_STATUS_SQL, None).rows[0]
            name = str(counts[0] or path.stem)
            status = recorded_status(name, counts[1:])
            snapshot = _read_snapshot(select, status)
        finally:
            con.close()
        return cls(snapshot, name=name, action_sink=action_sink)

    def history(self) -> Snapshot:
        """The session as recorded."""
        return self._snapshot

    def follow(self, post: Post, stop: threading.Event) -> None:
        """Post the scripted messages (if any) and return: a finished session does not change."""
        for topic, payload in self._messages:
            if stop.is_set():
                return
            post(topic, payload)

    def act(self, action: str, **params: Any) -> dict[str, Any]:
        """Hand the action to the sink; without one, ControlError: the session is not running."""
        if self._sink is None:
            raise _not_running(self.name)
        return self._sink(action, params)


def recorded_status(name: str, counts: Sequence[Any]) -> dict[str, Any]:
    """A status object for a finished session from ``elapsed, seen, done, pass, warn, fail,
    quarantined, queue``."""
    elapsed, seen, done, passed, warned, failed, quarantined, queue = counts
    return {
        "session": name,
        "elapsed_s": float(elapsed or 0.0),
        "seen": int(seen),
        "done": int(done),
        "pass": int(passed),
        "warn": int(warned),
        "fail": int(failed),
        "quarantined": int(quarantined),
        "queue": int(queue),
        "in_flight": 0,
        "workers": "-",
        "devices": "-",
        "paused": False,
        "acquisition_per_min": None,
        "processing_per_min": None,
        "keeping_up": None,
        "finished": True,
    }


class LiveSource:
    """A running session, through its PUB socket, query endpoint and control endpoint.

    Parameters
    ----------
    publish, query
        The PUB and query (REP) addresses.
    control, token
        The control endpoint and the session's token (None: no actions).
    name
        The session's name.
    endpoints_file
        The session's database; its ``<db>.endpoints.json`` is re-read while the daemon is
        lost, so that a daemon restarted on new ports is found again.
    lost_after_s
        Silence (no status heartbeat, no rows) after which the daemon counts as lost.
    query_timeout_s
        How long a history query may take.
    """

    def __init__(
        self,
        *,
        publish: str,
        query: str,
        control: str | None = None,
        token: str | None = None,
        name: str = "session",
        endpoints_file: Path | None = None,
        lost_after_s: float = 3.0,
        query_timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        self.live = True
        self.publish = publish
        self.query = query
        self.control = control
        self.token = token
        self._database = endpoints_file
        self._lost_after_s = lost_after_s
        self._query_timeout_s = query_timeout_s
        self._synced_at: str | None = None  # the latest time seen in the history read last
        self._lost = False

    @classmethod
    def from_endpoints(cls, endpoints: Endpoints, **options: Any) -> LiveSource:
        """A source for the session that wrote ``endpoints``.

        Raises
        ------
        CausalscopeError
            The session publishes nothing or answers no queries.
        """
        if endpoints.publish is None or endpoints.query is None:
            raise CausalscopeError(
                "Session cannot be followed",
                f"{endpoints.database}: the running session has no "
                f"{'publish' if endpoints.publish is None else 'query'} endpoint",
            )
        options.setdefault("name", Path(endpoints.database).stem)
        options.setdefault("endpoints_file", Path(endpoints.database))
        return cls(
            publish=endpoints.publish,
            query=endpoints.query,
            control=endpoints.control,
            token=endpoints.token,
            **options,
        )

    def _select(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        return query_endpoint(self.query, sql, params, timeout_s=self._query_timeout_s)

    def history(self) -> Snapshot:
        """Everything the session holds now, through the query endpoint."""
        status: dict[str, Any] | None = None
        if self.control is not None and self.token is not None:
            try:
                reply = control_request(self.control, self.token, "status", timeout_s=2.0)
                status = {k: v for k, v in reply.items() if k != "ok"}
            except ControlError:
                status = None  # the heartbeat brings it
        snapshot = _read_snapshot(self._select, status)
        self._synced_at = _latest_time(snapshot.rows)
        return snapshot

    def act(self, action: str, **params: Any) -> dict[str, Any]:
        """Send one request to the control endpoint."""
        if self.control is None or self.token is None:
            raise ControlError(
                "No control endpoint",
                f"session {self.name} announced no control endpoint and token; it can be "
                "watched but not controlled",
            )
        return control_request(self.control, self.token, action, **params)

    def _refresh_endpoints(self) -> bool:
        """Re-read the endpoints file; True when the addresses changed."""
        if self._database is None:
            return False
        try:
            found = read_endpoints(self._database)
        except CausalscopeError:
            return False
        if found is None or found.publish is None or found.query is None:
            return False
        changed = (found.publish, found.query) != (self.publish, self.query)
        self.publish, self.query = found.publish, found.query
        self.control = found.control or self.control
        self.token = found.token or self.token
        return changed

    def _catch_up(self, post: Post) -> None:
        """Rows committed between the history's read and the subscription."""
        if self._synced_at is None:
            return
        result = self._select(_CATCH_UP_SQL, [self._synced_at])
        ids = []
        for row in result.rows:
            decoded = decode_exposure_row(result.columns, row)
            ids.append(str(decoded["exposure_id"]))
            post("exposure", decoded)
        if not ids or not _has_causal(self._select):
            return
        # their causal verdicts, each with the latest ranking, as the daemon publishes them
        ranking = _dicts(self._select(CAUSES_SQL, None))
        for verdict in _dicts(self._select(_CAUSAL_CATCH_UP_SQL, [ids]), ("shares",)):
            post("causal", {**verdict, "ranking": ranking})

    def follow(self, post: Post, stop: threading.Event) -> None:
        """Subscribe and post each message; report loss and recovery of the daemon.

        After ``lost_after_s`` of silence, ``post("connection", {"state": "lost"})``; when
        messages come again the history is re-read (``post("history", {"snapshot": ...})``)
        and ``post("connection", {"state": "reconnected"})`` follows.
        """
        import zmq

        context = zmq.Context()
        try:
            while not stop.is_set():
                self._follow_once(context, post, stop)
        finally:
            context.term()

    def _follow_once(self, context: Any, post: Post, stop: threading.Event) -> None:
        import zmq

        socket = context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, 100_000)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(self.publish)
        synced = self._synced_at is not None
        last_heard = time.monotonic()
        last_try = 0.0
        try:
            if synced:
                try:
                    self._catch_up(post)
                except CausalscopeError:
                    pass  # the next heartbeat or a reconnect re-reads the history
            while not stop.is_set():
                now = time.monotonic()
                if not socket.poll(100, zmq.POLLIN):
                    if not self._lost and now - last_heard > self._lost_after_s:
                        self._lost = True
                        post("connection", {"state": "lost", "address": self.publish})
                    if self._lost and self._refresh_endpoints():
                        return  # resubscribe at the daemon's new address
                    continue
                frames = socket.recv_multipart()
                last_heard = now
                if self._lost or not synced:
                    if now - last_try < 1.0:
                        continue
                    last_try = now
                    try:
                        snapshot = self.history()
                    except CausalscopeError:
                        continue  # up but not answering yet: try again at the next message
                    post("history", {"snapshot": snapshot})
                    if self._lost:
                        post("connection", {"state": "reconnected", "address": self.publish})
                    self._lost, synced = False, True
                    continue
                message = _parse(frames)
                if message is not None:
                    post(*message)
        finally:
            socket.close(linger=0)


def _parse(frames: Sequence[bytes]) -> tuple[str, dict[str, Any]] | None:
    """``(topic, payload)`` of a ``[topic, json]`` message; None for anything malformed."""
    if len(frames) != 2:
        return None
    try:
        topic = frames[0].decode()
        payload = json.loads(frames[1])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return (topic, dict(payload)) if isinstance(payload, Mapping) else None


def _latest_time(rows: Sequence[Mapping[str, Any]]) -> str | None:
    times = [t for row in rows for t in (row.get("done_at"), row.get("seen_at")) if t]
    return max(times) if times else "1970-01-01T00:00:00"
