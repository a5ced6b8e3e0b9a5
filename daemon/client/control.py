"""Asking a running session's control endpoint: what an operator may ask of it.

The endpoint (served by the daemon, :mod:`causalscope.daemon.control`) is a ZeroMQ REP socket
that answers JSON requests. Because it changes the session, every request carries the session's
token: a random secret written, readable by its owner only, into ``<session>.endpoints.json``.

Request: ``{"token": "...", "action": "...", ...parameters}``. Reply: ``{"ok": true, ...}`` or
``{"ok": false, "error": "what was wrong"}``. Actions:

``status``         the session's status (the same object the PUB socket sends on ``status``)
``label``          ``exposure_id``, ``label`` (``accept`` or ``reject``): stored in ``labels``
``pause``          stop handing out new exposures (those in flight finish); ``resume`` undoes it
``set_threshold``  ``name`` (a key of the status's ``thresholds``), ``value`` (a number):
                   the alert threshold, used from the next exposure on
``thumbnail``      ``exposure_id``, ``kind`` (``micrograph`` or ``power_spectrum``): the PNG, as
                   base64 text in ``png_base64``; ``kind`` ``class_gallery`` (no
                   ``exposure_id``): the latest update's 2D class gallery (see
                   :mod:`.gallery`), with that update's ``version``
``class_label``    ``class_index`` (from 0), ``label`` (``select`` or ``reject``): stored in
                   ``class_labels``; the running 2D classification applies it at its next
                   update
"""

from __future__ import annotations

import json
from typing import Any

from causalscope.daemon.client.errors import ControlError

__all__ = ["ACTIONS", "control_request"]

ACTIONS = ("status", "label", "pause", "resume", "set_threshold", "thumbnail", "class_label")


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
