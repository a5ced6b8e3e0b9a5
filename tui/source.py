"""Where the dashboard's data comes from: a running session, or a finished one.

A :class:`SessionSource` gives the session's history at once (:meth:`~SessionSource.history`),
then follows it (:meth:`~SessionSource.follow`, a blocking loop run by a worker thread that
hands each published message to ``post(topic, payload)``), and carries out the operator's
actions (:meth:`~SessionSource.act`). :class:`LiveSource` reads a running session through its
PUB socket, query endpoint and control endpoint; :class:`RecordedSource` reads a finished
session's DuckDB file read-only, or rows held in memory (tests, benchmarks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from causalscope.daemon.client import (
    CausalscopeError,
    ControlError,
    Endpoints,
    QueryResult,
    Snapshot,
    catch_up,
    control_request,
    latest_time,
    parse_message,
    query_endpoint,
    read_endpoints,
    read_recorded,
    read_snapshot,
)

__all__ = [
    "ActionSink",
    "LiveSource",
    "Post",
    "RecordedSource",
    "SessionSource",
    "Snapshot",
]

#: ``post(topic, payload)``: how :meth:`SessionSource.follow` hands on what it receives.
Post = Callable[[str, dict[str, Any]], None]
#: ``sink(action, params) -> reply``: carries out actions for a :class:`RecordedSource` in tests.
ActionSink = Callable[[str, dict[str, Any]], dict[str, Any]]


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
        name, snapshot = read_recorded(path)
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
        snapshot = read_snapshot(self._select, status)
        self._synced_at = latest_time(snapshot.rows)
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
        for topic, payload in catch_up(self._select, self._synced_at):
            post(topic, payload)

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
                message = parse_message(frames)
                if message is not None:
                    post(*message)
        finally:
            socket.close(linger=0)
