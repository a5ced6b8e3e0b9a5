"""A session's history as the dashboard loads it, from the views, and published messages read.

Everything here works on a ``select(sql, params) -> QueryResult`` function, so the same code
reads a finished session's file (:func:`read_recorded`) and a running session's query
endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from causalscope.daemon.client import views
from causalscope.daemon.client.query import QueryResult

__all__ = [
    "LABELS_SQL",
    "QUARANTINE_SQL",
    "RECORDED_STATUS_SQL",
    "Select",
    "Snapshot",
    "catch_up",
    "decode_exposure_row",
    "has_causal",
    "has_evaluations",
    "latest_time",
    "parse_message",
    "read_recorded",
    "read_snapshot",
    "recorded_status",
]

#: ``select(sql, params)``: runs one SELECT on a session.
Select = Callable[[str, Sequence[Any] | None], QueryResult]

#: Operators' labels, oldest first (the latest per exposure wins).
LABELS_SQL = "SELECT exposure_id, label, labelled_at, labelled_by FROM labels ORDER BY id"
#: Quarantine rows, oldest first.
QUARANTINE_SQL = "SELECT * FROM quarantine ORDER BY id"
#: A finished session's name, its span and its counts (what :func:`recorded_status` takes).
RECORDED_STATUS_SQL = (
    "SELECT (SELECT name FROM session LIMIT 1), "
    "epoch(max(coalesce(done_at, seen_at))) - epoch(min(seen_at)), count(*), "
    "count(*) FILTER (WHERE state = 'done'), "
    "count(*) FILTER (WHERE gate_status = 'pass' AND state = 'done'), "
    "count(*) FILTER (WHERE gate_status = 'warn' AND state = 'done'), "
    "count(*) FILTER (WHERE gate_status = 'fail' AND state = 'done'), "
    "count(*) FILTER (WHERE state = 'quarantined'), count(*) FILTER (WHERE state = 'seen') "
    "FROM exposures"
)
# The JSON columns of an exposure row (see views.exposure_rows).
_EXPOSURE_JSON = ("outputs", "timings_s", "problems", "acquisition", "motion", "ctf", "picking")


@dataclass(frozen=True)
class Snapshot:
    """A session's history as the dashboard loads it.

    Attributes
    ----------
    rows
        Exposure rows (as published on ``exposure``, less the per-frame shifts), in the order
        they were seen.
    alerts
        Alert events (``kind == "alert"``), oldest first.
    labels
        The latest operator label per exposure id.
    status
        The session's status (as published on ``status``), or None when none is known yet.
    quarantine
        Quarantine rows, oldest first.
    causes
        The causal model's latest ranking of the session's causes (rank 1 first); None when
        the session has no causal model (a file written before it).
    causal
        The causal model's verdict on each exposure it learned from (as published on
        ``causal``, without the ranking), in the order it learned them.
    evaluations
        The running reconstructions' updates, oldest first, as published on ``evaluation``
        less the bulky lists (no ``classes`` in a ``class_set``, no FSC curves in a ``map``);
        empty for a session without them (or a file older than schema 3).
    class_set
        The latest class set with its ``classes`` and its update's ``version``, or None.
    reconstruction
        The latest map with its FSC curves and its update's ``version``, or None.
    class_labels
        The operator's latest label (``select`` or ``reject``) per class index.
    scores
        Each scored exposure's score with its obligations (as published on ``score``), by
        exposure id; empty for a file older than schema 4.
    """

    rows: list[dict[str, Any]]
    alerts: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    status: dict[str, Any] | None = None
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    causes: list[dict[str, Any]] | None = None
    causal: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    class_set: dict[str, Any] | None = None
    reconstruction: dict[str, Any] | None = None
    class_labels: dict[int, str] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def decode_exposure_row(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """One row of the view ``exposure_rows`` in the published form (JSON text decoded)."""
    out = dict(zip(columns, row, strict=True))
    for name in _EXPOSURE_JSON:
        if name in out:
            out[name] = _decoded(out[name])
    out["flags"] = _decoded(out.get("flags")) or []
    return out


def _dicts(result: QueryResult, json_fields: Iterable[str] = ()) -> list[dict[str, Any]]:
    decode = set(json_fields)
    return [
        {k: _decoded(v) if k in decode else v for k, v in zip(result.columns, row, strict=True)}
        for row in result.rows
    ]


def has_causal(select: Select) -> bool:
    """Whether the session has the causal model's views (a file written before it has not)."""
    return int(select(views.HAS_CAUSAL_SQL, None).rows[0][0]) == len(views.CAUSAL_RELATIONS)


def has_evaluations(select: Select) -> bool:
    """Whether the session has the running reconstructions' tables (schema 3 on)."""
    found = int(select(views.HAS_EVALUATIONS_SQL, None).rows[0][0])
    return found == len(views.EVALUATION_RELATIONS)


_EVALUATION_JSON = ("class_set", "map", "forecast")
_SCORE_JSON = ("terms", "weights", "obligations")


def has_scores(select: Select) -> bool:
    """Whether the session has the scores' view and tables (schema 4 on)."""
    return int(select(views.HAS_SCORES_SQL, None).rows[0][0]) == len(views.SCORE_RELATIONS)


def _read_scores(select: Select) -> dict[str, dict[str, Any]]:
    if not has_scores(select):
        return {}
    return {str(row["subject"]): row for row in _dicts(select(views.SCORES_SQL, None), _SCORE_JSON)}


def _latest(select: Select, sql: str, part: str) -> dict[str, Any] | None:
    """The one row of ``sql`` (``version`` and the JSON object ``part``) as the object with
    its version; None when there is none."""
    rows = _dicts(select(sql, None), (part,))
    if not rows or not isinstance(rows[0].get(part), dict):
        return None
    return {"version": rows[0]["version"], **rows[0][part]}


def _read_evaluations(select: Select) -> dict[str, Any]:
    """The running reconstructions' part of a :class:`Snapshot` (its keyword arguments)."""
    if not has_evaluations(select):
        return {}
    labels = {int(r[1]): str(r[2]) for r in select(views.CLASS_LABELS_SQL, None).rows}
    return {
        "evaluations": _dicts(select(views.EVALUATIONS_SQL, None), _EVALUATION_JSON),
        "class_set": _latest(select, views.LATEST_CLASS_SET_SQL, "class_set"),
        "reconstruction": _latest(select, views.LATEST_MAP_SQL, "map"),
        "class_labels": labels,
    }


def read_snapshot(select: Select, status: dict[str, Any] | None) -> Snapshot:
    """Everything the session holds now, with ``status`` as given."""
    history = select(views.HISTORY_SQL, None)
    causes: list[dict[str, Any]] | None = None
    causal: list[dict[str, Any]] = []
    if has_causal(select):
        causes = _dicts(select(views.CAUSES_SQL, None))
        causal = _dicts(select(views.CAUSAL_SQL, None), ("shares",))
    return Snapshot(
        rows=[decode_exposure_row(history.columns, row) for row in history.rows],
        alerts=_dicts(select(views.ALERTS_SQL, None), ("data",)),
        labels={str(r[0]): str(r[1]) for r in select(LABELS_SQL, None).rows},
        status=status,
        quarantine=_dicts(select(QUARANTINE_SQL, None)),
        causes=causes,
        causal=causal,
        **_read_evaluations(select),
        scores=_read_scores(select),
    )


def catch_up(select: Select, since: str) -> list[tuple[str, dict[str, Any]]]:
    """The messages for what was committed from ``since`` (ISO time) on: each exposure's row,
    the causal verdicts on those exposures, each with the latest ranking, the running
    reconstructions' updates, the class labels and the scores, as published."""
    result = select(views.EXPOSURE_CATCH_UP_SQL, [since])
    messages: list[tuple[str, dict[str, Any]]] = []
    ids = []
    for row in result.rows:
        decoded = decode_exposure_row(result.columns, row)
        ids.append(str(decoded["exposure_id"]))
        messages.append(("exposure", decoded))
    if ids and has_causal(select):
        ranking = _dicts(select(views.CAUSES_SQL, None))
        for verdict in _dicts(select(views.CAUSAL_CATCH_UP_SQL, [ids]), ("shares",)):
            messages.append(("causal", {**verdict, "ranking": ranking}))
    if has_evaluations(select):
        for update in _dicts(select(views.EVALUATION_CATCH_UP_SQL, [since]), _EVALUATION_JSON):
            messages.append(("evaluation", update))
        for label in _dicts(select(views.CLASS_LABEL_CATCH_UP_SQL, [since])):
            messages.append(("class_label", label))
    if has_scores(select):
        for score in _dicts(select(views.SCORE_CATCH_UP_SQL, [since]), _SCORE_JSON):
            messages.append(("score", score))
    return messages


def recorded_status(name: str, counts: Sequence[Any]) -> dict[str, Any]:
    """A status object for a finished session from ``elapsed, seen, done, pass, warn, fail,
    quarantined, queue`` (the columns of :data:`RECORDED_STATUS_SQL` after the name)."""
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


def read_recorded(path: Path) -> tuple[str, Snapshot]:
    """A finished session's name and history, read from its file (read-only, all at once).

    Raises
    ------
    CausalscopeError
        The file is missing, not a session, or held by a running daemon.
    """
    from causalscope.daemon.client.local import open_session_file, run_select
    from causalscope.daemon.client.paths import relocation

    path = Path(path)
    con = open_session_file(
        path,
        hint=" (a running session is read through its endpoints: `causalscope tui --connect` "
        "with its endpoints file)",
    )
    try:

        def select(sql: str, params: Sequence[Any] | None) -> QueryResult:
            return run_select(con, sql, params)

        counts = select(RECORDED_STATUS_SQL, None).rows[0]
        name = str(counts[0] or path.stem)
        snapshot = read_snapshot(select, recorded_status(name, counts[1:]))
        moved = relocation(con)  # a session folder copied or moved since it ran
        for row in snapshot.rows:
            if isinstance(row.get("outputs"), dict):
                row["outputs"] = moved.outputs(row["outputs"])
        return name, snapshot
    finally:
        con.close()


def parse_message(frames: Sequence[bytes]) -> tuple[str, dict[str, Any]] | None:
    """``(topic, payload)`` of a published ``[topic, json]`` message; None for a malformed one.

    The payload is handed on as sent (its shape is the topic's model in :data:`.wire.TOPICS`;
    :func:`.wire.parse_payload` checks it where typed values are wanted).
    """
    if len(frames) != 2:
        return None
    try:
        topic = frames[0].decode()
        payload = json.loads(frames[1])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return (topic, dict(payload)) if isinstance(payload, Mapping) else None


def latest_time(rows: Sequence[Mapping[str, Any]]) -> str:
    """The latest ``done_at`` or ``seen_at`` of ``rows`` (ISO text); the epoch when none."""
    times = [t for row in rows for t in (row.get("done_at"), row.get("seen_at")) if t]
    return max(times) if times else "1970-01-01T00:00:00"
