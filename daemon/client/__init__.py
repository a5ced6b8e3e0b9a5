"""The client of a session: what the dashboard (and any other reader) needs of the daemon.

One contract between the daemon and its readers: where a running session is
(:mod:`.endpoints`), how to ask it (:mod:`.query`, :mod:`.control`), the shapes of what it
publishes and of its views (:mod:`.wire`, :mod:`.views`), a session's history
(:mod:`.history`), and a finished session's file (:mod:`.local`, the only part that imports
DuckDB, when it is used). Nothing here imports torch, Ray or the store's writer.
"""

from causalscope.daemon.client.control import ACTIONS, control_request
from causalscope.daemon.client.endpoints import (
    Endpoints,
    endpoints_path,
    load_endpoints,
    read_endpoints,
)
from causalscope.daemon.client.errors import CausalscopeError, ControlError, QueryError, StoreError
from causalscope.daemon.client.history import (
    Select,
    Snapshot,
    catch_up,
    decode_exposure_row,
    latest_time,
    parse_message,
    read_recorded,
    read_snapshot,
    recorded_status,
)
from causalscope.daemon.client.query import QueryResult, Selectable, query_endpoint
from causalscope.daemon.client.wire import TOPICS, parse_payload

__all__ = [
    "ACTIONS",
    "TOPICS",
    "CausalscopeError",
    "ControlError",
    "Endpoints",
    "QueryError",
    "QueryResult",
    "Select",
    "Selectable",
    "Snapshot",
    "StoreError",
    "catch_up",
    "control_request",
    "decode_exposure_row",
    "endpoints_path",
    "latest_time",
    "load_endpoints",
    "parse_message",
    "parse_payload",
    "query_endpoint",
    "read_endpoints",
    "read_recorded",
    "read_snapshot",
    "recorded_status",
]
