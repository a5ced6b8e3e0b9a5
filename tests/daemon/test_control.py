"""The control endpoint: token required, actions carried out on the owner's thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from causalscope.daemon.control import ControlError, ControlServer, control_request


def _serve(server: ControlServer, stop: threading.Event) -> threading.Thread:
    def loop() -> None:
        while not stop.is_set():
            server.serve_pending()
            stop.wait(0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_requests_need_the_token_and_reach_the_handler() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        if request["action"] == "label" and request["label"] not in ("accept", "reject"):
            raise ValueError(f"label must be accept or reject, got {request['label']!r}")
        return {"echo": request["action"]}

    server = ControlServer("tcp://127.0.0.1:0", token="secret", handler=handler)
    stop = threading.Event()
    _serve(server, stop)
    try:
        assert server.endpoint.startswith("tcp://127.0.0.1:")
        reply = control_request(server.endpoint, "secret", "pause")
        assert reply == {"ok": True, "echo": "pause"}
        with pytest.raises(ControlError, match="wrong session token"):
            control_request(server.endpoint, "guess", "pause")
        with pytest.raises(ControlError, match="unknown action 'shutdown'"):
            control_request(server.endpoint, "secret", "shutdown")
        with pytest.raises(ControlError, match="label must be accept or reject"):
            control_request(server.endpoint, "secret", "label", exposure_id="a", label="maybe")
        # refused requests never reached the handler
        assert [r["action"] for r in seen] == ["pause", "label"]
    finally:
        stop.set()
        server.close()


def test_an_unreachable_session_is_a_clear_error() -> None:
    with pytest.raises(ControlError, match="no reply"):
        control_request("tcp://127.0.0.1:9", "t", "status", timeout_s=0.3)


def test_the_status_is_answered_from_the_board_without_waiting_for_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many clients polling the status cost the session's loop nothing: the endpoint's thread
    answers from the status the loop made last; an action makes it again before its reply, and
    a status older than the board's bound waits for the loop as any request does."""
    import time
    from types import SimpleNamespace

    from causalscope.daemon import live_control

    made: list[int] = []

    def status(session: Any) -> dict[str, Any]:
        made.append(1)
        return {"made": len(made), "paused": session.paused}

    def act(session: Any, request: dict[str, Any]) -> dict[str, Any]:
        if request["action"] == "pause":
            session.paused = True
            return {"paused": True}
        return {"status": status(session)}

    monkeypatch.setattr(live_control, "session_status", status)
    monkeypatch.setattr(live_control, "act", act)
    counts = SimpleNamespace(received=1, committed=0, quarantined=0, skipped=0, retried=0)
    scheduler = SimpleNamespace(counts=counts, queued=0, in_flight=1, paused=False)
    session = SimpleNamespace(paused=False, scheduler=scheduler)
    board = live_control.StatusBoard(session, max_age_s=0.5)  # type: ignore[arg-type]
    server = ControlServer(
        "tcp://127.0.0.1:0",
        token="t",
        handler=board.act,
        answer_now=board.answer_now,
        timeout_s=0.3,
    )
    try:
        # nothing made yet: the request waits for the loop, which does not run here
        with pytest.raises(ControlError, match="did not answer"):
            control_request(server.endpoint, "t", "status")
        board.refresh()  # the loop's status of this second
        for _ in range(20):
            reply = control_request(server.endpoint, "t", "status")
            assert reply["status"] == {"made": 1, "paused": False}
        assert len(made) == 1  # twenty answers, one status made
        # an exposure committed (its count goes up before anyone hears of it): the kept
        # status is old, and only the loop may answer until it makes it again
        counts.committed, scheduler.in_flight = 1, 0
        with pytest.raises(ControlError, match="did not answer"):
            control_request(server.endpoint, "t", "status")
        board.refresh_on_change()  # the loop, after its step
        assert control_request(server.endpoint, "t", "status")["status"]["made"] == 2
        board.refresh_on_change()  # nothing moved: nothing made
        assert len(made) == 2
        stop = threading.Event()
        loop = _serve(server, stop)
        assert control_request(server.endpoint, "t", "pause")["paused"] is True
        stop.set()
        loop.join(timeout=2)
        assert control_request(server.endpoint, "t", "status")["status"]["paused"] is True
        time.sleep(0.6)  # older than the board's bound: only the loop may answer now
        with pytest.raises(ControlError, match="did not answer"):
            control_request(server.endpoint, "t", "status")
    finally:
        server.close()
