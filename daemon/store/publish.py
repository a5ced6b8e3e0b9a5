"""The store's PUB socket: committed rows as ``[topic, json]`` messages, never blocking.

Topics: ``exposure`` (an exposure's joined row after its commit), ``quarantine``, ``event`` and
``label``. PUB drops messages for a subscriber whose queue is full (the high-water mark) instead
of waiting for it, and sends here are non-blocking as well, so a subscriber that stops reading
can never slow or stop commits; it misses messages and can catch up through the query endpoint.
"""

from __future__ import annotations

from typing import Any

import zmq

from causalscope.daemon.client._json import dumps
from causalscope.daemon.client.errors import StoreError

__all__ = ["TOPICS", "Publisher"]

TOPICS = frozenset({b"exposure", b"quarantine", b"event", b"label"})


class Publisher:
    """A bound PUB socket; used only from the store's (the caller's) thread.

    Parameters
    ----------
    context
        The store's ZeroMQ context.
    address
        Where to bind, e.g. ``tcp://127.0.0.1:5556`` (port 0: any free port).
    high_water_mark
        Messages queued per subscriber before PUB drops.
    """

    def __init__(self, context: zmq.Context, address: str, *, high_water_mark: int) -> None:
        self._socket = context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
        try:
            self._socket.bind(address)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise StoreError(
                "Cannot bind the publish endpoint", f"{address}: {exc} (is another session on it?)"
            ) from exc
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sent = 0
        self.dropped = 0

    def publish(self, topic: bytes, row: Any) -> bool:
        """Send ``[topic, json]`` without blocking; False (and counted) when it was dropped.

        PUB also drops silently, per subscriber, at the high-water mark; those drops are not
        counted here (ZeroMQ does not report them).
        """
        try:
            self._socket.send_multipart([topic, dumps(row).encode()], flags=zmq.NOBLOCK)
        except zmq.ZMQError:  # zmq.Again (full) or a closing context: never the commit's problem
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Close the socket without waiting for unsent messages."""
        self._socket.close(linger=0)
