"""The control endpoint's server: what an operator may ask of a running session.

A ZeroMQ REP socket (``store.control_address``, 127.0.0.1 by default) answers JSON requests that
carry the session's token; the requests, replies and actions are those of
:mod:`causalscope.daemon.client.control` (the client the dashboard uses). The token is written,
readable by its owner only, into ``<session>.endpoints.json`` beside the database
(``causalscope tui`` reads it; over SSH, forward the ports and copy the token).

The server thread only receives and replies; each request is carried out by the session's own
loop (the store has one writer), which calls :meth:`ControlServer.serve_pending`, unless
``answer_now`` answers it at once from what the loop left ready (the status).
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from causalscope.daemon.client.control import ACTIONS, control_request
from causalscope.daemon.client.errors import CausalscopeError, ControlError

__all__ = ["ACTIONS", "ControlError", "ControlServer", "control_request", "new_token"]

log = logging.getLogger(__name__)

_POLL_MS = 100


def new_token() -> str:
    """A fresh random session token."""
    return secrets.token_urlsafe(24)


@dataclass
class _Request:
    body: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """The REP socket of a running session.

    Parameters
    ----------
    address
        Where to bind (``tcp://127.0.0.1:0`` picks a free port; see :attr:`endpoint`).
    token
        The secret every request must carry.
    handler
        Carries out one checked request on the session's loop; returns the reply's fields.
    timeout_s
        How long a request waits for the loop before the reply says the session is busy.
    answer_now
        Called on the server's thread with each checked request: its reply's fields, to send
        at once, or None to hand the request to the loop.
    """

    def __init__(
        self,
        address: str,
        *,
        token: str,
        handler: Handler,
        timeout_s: float = 10.0,
        answer_now: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
    ) -> None:
        import zmq

        self._token = token
        self._handler = handler
        self._answer_now = answer_now
        self._timeout_s = timeout_s
        self._pending: queue.Queue[_Request] = queue.Queue()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._socket = context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.bind(address)
        except zmq.ZMQError as error:
            self._socket.close()
            raise ControlError(
                "Cannot open the control endpoint",
                f"{address}: {error} (store.control_address; is another session using it?)",
            ) from error
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._thread = threading.Thread(target=self._run, name="causalscope-control", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(_POLL_MS):
                    continue
                raw = self._socket.recv()
                reply = self._answer(raw)
                self._socket.send(json.dumps(reply, default=str).encode())
        except BaseException as error:  # reported to the owner by check()
            self._error = error
        finally:
            self._socket.close()

    def _answer(self, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return {"ok": False, "error": f"request is not UTF-8 JSON: {error}"}
        if not isinstance(body, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        token = body.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token, self._token):
            return {"ok": False, "error": "refused: missing or wrong session token"}
        action = body.get("action")
        if action not in ACTIONS:
            return {"ok": False, "error": f"unknown action {action!r}; one of {', '.join(ACTIONS)}"}
        request = _Request({k: v for k, v in body.items() if k != "token"})
        if self._answer_now is not None:
            ready = self._answer_now(request.body)
            if ready is not None:
                return {"ok": True, **ready}
        self._pending.put(request)
        if not request.done.wait(self._timeout_s):
            return {
                "ok": False,
                "error": f"the session did not answer within {self._timeout_s:g} s",
            }
        return request.reply

    def serve_pending(self) -> int:
        """Carry out the waiting requests on the caller's thread; returns how many."""
        served = 0
        while True:
            try:
                request = self._pending.get_nowait()
            except queue.Empty:
                return served
            try:
                reply = self._handler(request.body)
                request.reply = {"ok": True, **reply}
            except (CausalscopeError, ValueError, KeyError, TypeError) as error:
                message = error.message if isinstance(error, CausalscopeError) else str(error)
                request.reply = {"ok": False, "error": message}
            request.done.set()
            served += 1

    def check(self) -> None:
        """Re-raise the server thread's error, if it had one."""
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the thread (the socket closes with it)."""
        self._stop.set()
        self._thread.join(timeout=2)
