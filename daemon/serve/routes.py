"""The API's reads: sessions, exposures, causes, 2D classes, reconstructions, SQL.

Every row comes from the session's views (:mod:`causalscope.daemon.client.views`), so the API
returns what the store publishes and the dashboard shows, in the same shapes; the session's
summary is :func:`causalscope.daemon.store.summary.summarize`, as ``causalscope summary``
prints it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from causalscope.daemon.client import views
from causalscope.daemon.client.errors import StoreError
from causalscope.daemon.serve.cache import Recent
from causalscope.daemon.serve.sessions import (
    NotFoundError,
    Reader,
    SessionRef,
    check_id,
    find_session,
    list_sessions,
)
from causalscope.daemon.serve.sql_guard import SQL_TIME_LIMIT_S, guard_sql
from causalscope.daemon.store.summary import COUNTS_SQL, summarize

__all__ = ["router", "session_of"]

router = APIRouter()

#: The most exposures one page holds.
MAX_PAGE_SIZE = 500
# the JSON columns of ``exposure_rows``
_EXPOSURE_COLUMNS = (
    "outputs",
    "timings_s",
    "problems",
    "acquisition",
    "motion",
    "ctf",
    "picking",
    "flags",
)
_SCORE_JSON = ("terms", "weights", "obligations")
_EVALUATION_JSON = ("class_set", "map", "forecast")
_STATES = ("seen", "done", "quarantined")
#: The summaries of this process's recent requests (see :class:`~.cache.Recent`).
_SUMMARIES: Recent[tuple[bool, dict[str, Any]]] = Recent(max_age_s=1.0)
_GATE = ("pass", "warn", "fail")


def session_of(request: Request, session_id: str) -> SessionRef:
    """The session named in the path (400 for a bad id, 404 for an unknown one)."""
    return find_session(request.app.state.options.sessions_dir, session_id)


Session = Annotated[SessionRef, Depends(session_of)]


def _has(reader: Reader, sql: str, relations: tuple[str, ...]) -> bool:
    return int(reader.select(sql).rows[0][0]) == len(relations)


@router.get("/sessions", tags=["sessions"])
def sessions(request: Request) -> list[dict[str, Any]]:
    """Every session under the folder, live or finished: its counts, and a live one's status
    (queue, rates, workers, paused); ``error`` instead for a session that cannot be read."""
    out: list[dict[str, Any]] = []
    for ref in list_sessions(request.app.state.options.sessions_dir):
        try:
            with ref.reading() as reader:
                counts = reader.dicts(COUNTS_SQL)[0]
                live = reader.live
        except StoreError as error:  # one session not answering does not hide the others
            out.append({"id": ref.name, "live": None, "error": f"{error.title}: {error.message}"})
            continue
        out.append(
            {
                "id": ref.name,
                "live": live,
                "counts": counts,
                "status": ref.status() if live else None,
            }
        )
    return out


@router.get("/sessions/{session_id}", tags=["sessions"])
def session_summary(session: Session) -> dict[str, Any]:
    """The session's summary (what ``causalscope summary --json`` prints; computed at most once
    a second, however many ask), whether it is live, and a live session's status."""

    def compute() -> tuple[bool, dict[str, Any]]:
        with session.reading() as reader:
            return reader.live, summarize(reader).to_dict()

    live, summary = _SUMMARIES.get(session.database, compute)
    return {
        "id": session.name,
        "live": live,
        "status": session.status() if live else None,
        "summary": summary,
    }


@router.get("/sessions/{session_id}/report", tags=["sessions"], response_class=HTMLResponse)
def report(session: Session) -> HTMLResponse:
    """The session's report, as ``causalscope report`` writes it: one self-contained HTML page
    (verdict, summary, plots, causes, worst exposures, classes, FSC, settings); a running
    session's is read through its query endpoint."""
    from causalscope.daemon.report.data import gather
    from causalscope.daemon.report.html import page

    with session.reading(time_limit_s=SQL_TIME_LIMIT_S) as reader:
        return HTMLResponse(page(gather(reader, base=session.database.parent)))


@router.get("/sessions/{session_id}/exposures", tags=["exposures"])
def exposures(
    session: Session,
    status: Annotated[
        Literal["seen", "done", "quarantined", "pass", "warn", "fail"] | None,
        Query(description="an exposure state, or a done exposure's gate verdict"),
    ] = None,
    since: Annotated[dt.datetime | None, Query(description="seen at or after (ISO, UTC)")] = None,
    until: Annotated[dt.datetime | None, Query(description="seen before (ISO, UTC)")] = None,
    page: Annotated[int, Query(ge=0, description="page number, from 0")] = 0,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
) -> dict[str, Any]:
    """Exposures in the order they were seen, a page at a time: each with its motion, CTF (ice
    included), picks, gate flags and score; ``total`` counts all that match."""
    where, params = _exposure_filter(status, since, until)
    with session.reading() as reader:
        total = int(
            reader.select(f"SELECT count(*) FROM exposure_rows AS r {where}", params).rows[0][0]
        )
        items = _exposure_rows(
            reader,
            f"{where} ORDER BY r.seen_at, r.exposure_id LIMIT ? OFFSET ?",
            [*params, page_size, page * page_size],
        )
    return {"total": total, "page": page, "page_size": page_size, "items": items}


def _exposure_filter(
    status: str | None, since: dt.datetime | None, until: dt.datetime | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if status in _STATES:
        clauses.append("r.state = ?")
        params.append(status)
    elif status in _GATE:
        clauses.append("r.state = 'done' AND r.gate_status = ?")
        params.append(status)
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            clauses.append(f"r.seen_at {op} ?::TIMESTAMP")
            params.append(_utc(bound).isoformat())
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _utc(moment: dt.datetime) -> dt.datetime:
    # the store's TIMESTAMPs are UTC without a zone
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def _exposure_rows(reader: Reader, tail: str, params: list[Any]) -> list[dict[str, Any]]:
    has_scores = _has(reader, views.HAS_SCORES_SQL, views.SCORE_RELATIONS)
    score = (
        "CASE WHEN s.subject IS NULL THEN NULL ELSE to_json(s) END AS score "
        "FROM exposure_rows AS r LEFT JOIN score_rows AS s "
        "ON s.kind = 'exposure' AND s.subject = r.exposure_id"
        if has_scores
        else "NULL::JSON AS score FROM exposure_rows AS r"
    )
    return reader.dicts(f"SELECT r.*, {score} {tail}", params, (*_EXPOSURE_COLUMNS, "score"))


@router.get("/sessions/{session_id}/exposures/{exposure_id}", tags=["exposures"])
def exposure(session: Session, exposure_id: str) -> dict[str, Any]:
    """One exposure: its row (motion with per-frame shifts, CTF, picks, flags, score), the
    causal model's verdict on it with each cause's share, and its operator labels."""
    check_id(exposure_id, "exposure id")
    with session.reading() as reader:
        rows = _exposure_rows(reader, "WHERE r.exposure_id = ?", [exposure_id])
        if not rows:
            raise NotFoundError(
                "Exposure not found", f"no exposure {exposure_id!r} in session {session.name!r}"
            )
        row = rows[0]
        shifts = reader.select(
            "SELECT shifts_px FROM motion WHERE exposure_id = ?", [exposure_id]
        ).rows
        if row["motion"] is not None and shifts:
            found_shifts = shifts[0][0]
            row["motion"]["shifts_px"] = (
                json.loads(found_shifts) if isinstance(found_shifts, str) else found_shifts
            )
        row["causal"] = None
        if _has(reader, views.HAS_CAUSAL_SQL, views.CAUSAL_RELATIONS):
            found = reader.dicts(
                "SELECT * FROM causal_verdicts WHERE exposure_id = ?", [exposure_id], ("shares",)
            )
            row["causal"] = found[0] if found else None
        row["labels"] = reader.dicts(
            "SELECT label, labelled_at, labelled_by FROM labels WHERE exposure_id = ? ORDER BY id",
            [exposure_id],
        )
    return row


@router.get(
    "/sessions/{session_id}/exposures/{exposure_id}/{kind}.png",
    tags=["exposures"],
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}},
)
def exposure_image(
    session: Session, exposure_id: str, kind: Literal["micrograph", "power_spectrum", "picks"]
) -> FileResponse:
    """The exposure's thumbnail (``micrograph``), power spectrum, or micrograph with its picks
    circled and the areas not picked in tinted (``picks``, in colour), as PNG."""
    check_id(exposure_id, "exposure id")
    key = {
        "micrograph": "thumbnail",
        "power_spectrum": "power_spectrum_thumbnail",
        "picks": "picks_thumbnail",
    }[kind]
    with session.reading() as reader:
        found = reader.dicts(
            "SELECT outputs FROM exposures WHERE exposure_id = ?", [exposure_id], ("outputs",)
        )
    if not found:
        raise NotFoundError(
            "Exposure not found", f"no exposure {exposure_id!r} in session {session.name!r}"
        )
    path = (found[0]["outputs"] or {}).get(key)
    return _file(session, path, f"{kind} of exposure {exposure_id!r}", "image/png")


def _file(session: SessionRef, path: str | None, what: str, media_type: str) -> FileResponse:
    """The session's file at ``path``: only files inside the session's folder are served."""
    if not path:
        raise NotFoundError("File not found", f"the session has no {what} (yet)")
    from causalscope.daemon.client.paths import session_file

    resolved = session_file(path, session.root).resolve()  # also after the folder moved
    if not resolved.is_relative_to(session.root.resolve()) or not resolved.is_file():
        raise NotFoundError("File not found", f"the {what} is not in the session's folder")
    return FileResponse(resolved, media_type=media_type, filename=resolved.name)


@router.get("/sessions/{session_id}/causes", tags=["causes"])
def causes(session: Session) -> dict[str, Any]:
    """The causal model's latest ranking of what costs resolution: each cause's mean loss with
    its standard deviation (the error bar), P(top), weight and convergence."""
    with session.reading() as reader:
        if not _has(reader, views.HAS_CAUSAL_SQL, views.CAUSAL_RELATIONS):
            return {"exposures": 0, "causes": []}
        n = int(reader.select("SELECT count(*) FROM causal").rows[0][0])
        ranked = reader.dicts(views.CAUSES_SQL)
    return {"exposures": n, "causes": ranked}


def _evaluations(reader: Reader) -> bool:
    return _has(reader, views.HAS_EVALUATIONS_SQL, views.EVALUATION_RELATIONS)


@router.get("/sessions/{session_id}/classes", tags=["reconstructions"])
def classes(session: Session) -> dict[str, Any]:
    """The latest 2D classes: each class's particles, resolution, junk score and selection;
    their averages as one PNG at ``classes/gallery.png``."""
    with session.reading() as reader:
        if not _evaluations(reader):
            return {"version": None, "class_set": None}
        rows = reader.dicts(views.LATEST_CLASS_SET_SQL, None, ("class_set",))
    return rows[0] if rows else {"version": None, "class_set": None}


@router.get(
    "/sessions/{session_id}/classes/gallery.png",
    tags=["reconstructions"],
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}},
)
def class_gallery(session: Session) -> FileResponse:
    """The latest 2D class averages, ten to a row (PNG)."""
    latest = classes(session)
    path = (latest["class_set"] or {}).get("gallery_path")
    return _file(session, path, "2D class gallery", "image/png")


@router.get("/sessions/{session_id}/reconstructions", tags=["reconstructions"])
def reconstructions(session: Session) -> dict[str, Any]:
    """Every update of the running reconstructions, oldest first: particles, the map's
    resolution (resolution against particles) and the forecast at that update."""
    with session.reading() as reader:
        if not _evaluations(reader):
            return {"updates": []}
        updates = reader.dicts(views.EVALUATIONS_SQL, None, _EVALUATION_JSON)
    return {"updates": updates}


@router.get("/sessions/{session_id}/reconstructions/latest", tags=["reconstructions"])
def latest_map(session: Session) -> dict[str, Any]:
    """The latest 3D map: its resolutions, FSC curves (masked and unmasked; shell ``i`` at
    ``i / (2 (n - 1))`` cycles per pixel), coverage; the map itself at ``latest/map.mrc``."""
    with session.reading() as reader:
        rows = reader.dicts(views.LATEST_MAP_SQL, None, ("map",)) if _evaluations(reader) else []
    if not rows:
        raise NotFoundError("No map", f"session {session.name!r} has no 3D map yet")
    return rows[0]


@router.get(
    "/sessions/{session_id}/reconstructions/latest/map.mrc",
    tags=["reconstructions"],
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def latest_map_file(session: Session) -> FileResponse:
    """The latest 3D map (MRC) for download."""
    path = latest_map(session)["map"]["map_path"]
    return _file(session, path, "3D map", "application/octet-stream")


@router.get("/sessions/{session_id}/sql", tags=["sql"])
def sql(
    session: Session,
    q: Annotated[str, Query(description="one SELECT statement")],
    limit: Annotated[int, Query(description="rows returned at most (1 to 10000)")] = 1000,
) -> dict[str, Any]:
    """Run one read-only SELECT on the session (tables in the schema; ``SHOW TABLES``).

    Writes, ``ATTACH``, ``COPY``, settings, several statements and over-long text are refused
    (400); the query is stopped after 5 s; ``truncated`` says when rows were left out."""
    checked = guard_sql(q, limit)
    result = session.select(checked.sql, max_rows=checked.max_rows, time_limit_s=SQL_TIME_LIMIT_S)
    return result.to_dict()
