"""The control endpoint: what an operator may ask of a running session (the dashboard's actions).

A ZeroMQ REP socket (``store.control_address``, 127.0.0.1 by default) answers JSON requests.
Because it changes the session, every request must carry the session's token: a random
secret written, readable by its owner only, into ``<session>.endpoints.json`` beside the
database (``causalscope tui`` reads it; over SSH, forward the ports and copy the token).

Request: ``{"token": "...", "action": "...", ...parameters}``. Reply: ``{"ok": true, ...}`` or
``{"ok": false, "error": "what was wrong"}``. Actions:

``status``         the session's status (the same object the PUB socket sends on ``status``)
``label``          ``exposure_id``, ``label`` (``accept`` or ``reject``): stored in ``labels``
``pause``          stop handing out new exposures (those in flight finish); ``resume`` undoes it
``set_threshold``  ``name`` (a key of the status's ``thresholds``), ``value`` (a number):
                   the alert threshold, used from the next exposure on
``thumbnail``      ``exposure_id``, ``kind`` (``micrograph`` or ``power_spectrum``): the PNG, as
                   base64 text in ``png_base64``

The server thread only receives and replies; each request is carried out by the session's own
loop (the store has one writer), which calls :meth:`ControlServer.serve_pending`.
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

from causalscope.models.errors import CausalscopeError

__all__ = ["ACTIONS", "ControlError", "ControlServer", "control_request", "new_token"]

log = logging.getLogger(__name__)

ACTIONS = ("status", "label", "pause", "resume", "set_threshold", "thumbnail")
_POLL_MS = 100


class ControlError(CausalscopeError):
    """A control request could not be sent or was refused."""


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
    """

    def __init__(
        self, address: str, *, token: str, handler: Handler, timeout_s: float = 10.0
    ) -> None:
        import zmq

        self._token = token
        self._handler = handler
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


def control_request(
    address: str, token: str, action: str, *, timeout_s: float = 5.0, **params: Any
) -> dict[str, Any]:
    """Send one request to a session's control endpoint and return its reply.

    Raises
    ------
    ControlError
        No answer within ``timeout_s`` (the session is not running or not reachable), or the
        session refused the request (the reply's error is the message).
    """
    import zmq

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        socket.connect(address)
        socket.send(json.dumps({"token": token, "action": action, **params}).encode())
        if not socket.poll(int(timeout_s * 1000)):
            raise ControlError(
                "Session not answering",
                f"no reply from the control endpoint {address} within {timeout_s:g} s",
            )
        reply: dict[str, Any] = json.loads(socket.recv().decode())
    finally:
        socket.close()
    if not reply.get("ok"):
        raise ControlError(f"Request {action!r} refused", str(reply.get("error")))
    return reply
