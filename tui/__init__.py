"""The terminal dashboard: a thin, read-only view of a session (the daemon holds the logic).

``make_app(settings, source)`` builds the Textual app for a :class:`~tui.source.SessionSource`:
:class:`~tui.source.LiveSource` (a running session's endpoints) or
:class:`~tui.source.RecordedSource` (a finished session's file, or rows in memory).
"""

from causalscope.tui.app import Dashboard, make_app
from causalscope.tui.source import LiveSource, RecordedSource, SessionSource, Snapshot

__all__ = ["Dashboard", "LiveSource", "RecordedSource", "SessionSource", "Snapshot", "make_app"]
