"""The session store: one DuckDB file per session, written by :class:`SessionStore` alone.

Committed rows are published on a ZeroMQ PUB socket; history is answered by a read-only query
endpoint; after the session anyone opens the file read-only (:class:`SessionReader` does
either). The schema is documented in :mod:`daemon.store.schema`.
"""

from causalscope.daemon.store.endpoints import Endpoints, endpoints_path, read_endpoints
from causalscope.daemon.store.errors import QueryError, StoreError
from causalscope.daemon.store.query import QueryResult, check_select, query_endpoint
from causalscope.daemon.store.reader import SessionReader
from causalscope.daemon.store.schema import SCHEMA_VERSION
from causalscope.daemon.store.store import PendingExposure, SeenState, SessionStore
from causalscope.daemon.store.summary import Distribution, SessionSummary, summarize

__all__ = [
    "SCHEMA_VERSION",
    "Distribution",
    "Endpoints",
    "PendingExposure",
    "QueryError",
    "QueryResult",
    "SeenState",
    "SessionReader",
    "SessionStore",
    "SessionSummary",
    "StoreError",
    "check_select",
    "endpoints_path",
    "query_endpoint",
    "read_endpoints",
    "summarize",
]
