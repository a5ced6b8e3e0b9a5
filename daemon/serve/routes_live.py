"""A running session through the API: its event stream, and the operator's actions.

``/sessions/{id}/events`` is a server-sent event stream of what the store publishes (one
event per ZeroMQ message: the event's name is the topic, its data the JSON row, typed in
:mod:`causalscope.daemon.client.wire`), after a ``ready`` event once subscribed,
and an ``end`` event when the session finishes (the stream then closes).

Every action changes the session, so each needs the session's control token (in
``SESSION.endpoints.json``, readable by the daemon's user only) in the header
``X-Session-Token``: without it 401, with a wrong one 403; a finished session takes no
actions (409).
"""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator

from causalscope.daemon.client.control import control_request
from causalscope.daemon.client.wire import TOPICS
from causalscope.daemon.serve.routes import Session
from causalscope.daemon.serve.sessions import ID_PATTERN, SessionRef

__all__ = ["router"]

router = APIRouter(tags=["live"])

#: Seconds for a new subscription to reach the publisher before ``ready`` is sent (ZeroMQ
#: subscribes asynchronously; a message published before that is not received).
_JOIN_S = 0.3
_KEEP_ALIVE_MS = 1000


def _not_running(session: SessionRef) -> HTTPException:
    return HTTPException(
        status_code=409,
        detail=f"session {session.name!r} is not running (a finished session is read-only)",
    )


@router.get(
    "/sessions/{session_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    request: Request,
    session: Session,
    topics: Annotated[
        str | None, Query(description=f"comma-separated, of: {', '.join(TOPICS)}; default all")
    ] = None,
) -> StreamingResponse:
    """Server-sent events: every row the running session publishes after its commit."""
    chosen = list(TOPICS) if topics is None else [t.strip() for t in topics.split(",")]
    unknown = [t for t in chosen if t not in TOPICS]
    if unknown or not chosen:
        raise HTTPException(
            status_code=400,
            detail=f"unknown topics {unknown}; choose from {', '.join(TOPICS)}",
        )
    endpoints = session.endpoints()
    if endpoints is None or endpoints.publish is None:
        raise _not_running(session)
    return StreamingResponse(
        _stream(request, session, endpoints.publish, chosen),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    request: Request, session: SessionRef, address: str, topics: list[str]
) -> AsyncIterator[str]:
    import zmq
    import zmq.asyncio

    context = zmq.asyncio.Context.instance()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 10_000)
    for topic in topics:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
    try:
        socket.connect(address)
        await asyncio.sleep(_JOIN_S)
        yield "event: ready\ndata: {}\n\n"
        while True:
            if await socket.poll(_KEEP_ALIVE_MS):
                parts: list[bytes] = list(await socket.recv_multipart())
                topic, payload = bytes(parts[0]).decode(), bytes(parts[1]).decode()
                # the store's JSON is one line: it is one SSE data field as it is
                yield f"event: {topic}\ndata: {payload}\n\n"
            elif await request.is_disconnected():
                break
            elif session.endpoints() is None:  # the session has finished: nothing will come
                yield "event: end\ndata: {}\n\n"
                break
            else:
                yield ": keep-alive\n\n"
    finally:
        socket.close(linger=0)


class LabelBody(BaseModel):
    """An operator's verdict on an exposure."""

    exposure_id: str = Field(pattern=ID_PATTERN)
    label: Literal["accept", "reject"]


class ClassLabelBody(BaseModel):
    """An operator's select or reject of a 2D class (index from 0)."""

    class_index: int = Field(ge=0)
    label: Literal["select", "reject"]


class ThresholdBody(BaseModel):
    """An alert threshold's new value."""

    value: float

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value}")
        return value


SessionToken = Annotated[
    str | None, Header(alias="X-Session-Token", description="the session's control token")
]


def _act(session: SessionRef, token: str | None, action: str, **params: Any) -> dict[str, Any]:
    endpoints = session.endpoints()
    if endpoints is None or endpoints.control is None or endpoints.token is None:
        raise _not_running(session)
    if not token:
        raise HTTPException(
            status_code=401,
            detail="this changes the session: send its control token in 'X-Session-Token'",
        )
    if not hmac.compare_digest(token.encode(), endpoints.token.encode()):
        raise HTTPException(status_code=403, detail="wrong session token")
    reply = control_request(endpoints.control, endpoints.token, action, **params)
    reply.pop("ok", None)
    return reply


@router.post("/sessions/{session_id}/labels")
def label(
    session: Session, body: LabelBody, x_session_token: SessionToken = None
) -> dict[str, Any]:
    """Accept or reject an exposure (stored in ``labels``; the scores learn from it)."""
    return _act(session, x_session_token, "label", exposure_id=body.exposure_id, label=body.label)


@router.post("/sessions/{session_id}/class_labels")
def class_label(
    session: Session, body: ClassLabelBody, x_session_token: SessionToken = None
) -> dict[str, Any]:
    """Select or reject a 2D class; the running classification applies it at its next update."""
    return _act(
        session, x_session_token, "class_label", class_index=body.class_index, label=body.label
    )


@router.post("/sessions/{session_id}/pause")
def pause(session: Session, x_session_token: SessionToken = None) -> dict[str, Any]:
    """Stop handing out new exposures (those in flight finish)."""
    return _act(session, x_session_token, "pause")


@router.post("/sessions/{session_id}/resume")
def resume(session: Session, x_session_token: SessionToken = None) -> dict[str, Any]:
    """Hand out exposures again after a pause."""
    return _act(session, x_session_token, "resume")


@router.put("/sessions/{session_id}/thresholds/{name}")
def threshold(
    session: Session, name: str, body: ThresholdBody, x_session_token: SessionToken = None
) -> dict[str, Any]:
    """Set an alert threshold (a key of the status's ``thresholds``), used from the next
    exposure on."""
    return _act(session, x_session_token, "set_threshold", name=name, value=body.value)
