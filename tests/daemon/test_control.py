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
