"""The session store: one DuckDB file per session, written by :class:`SessionStore` alone.

Committed rows are published on a ZeroMQ PUB socket; history is answered by a read-only query
endpoint; after the session anyone opens the file read-only (:class:`SessionReader` does
either). The schema is documented in :mod:`causalscope.daemon.store.schema`.

The names below are imported when first used: importing this package (or one of its light
modules, such as :mod:`.schema`) does not load the writer, DuckDB or ZeroMQ.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from causalscope.daemon.client.endpoints import Endpoints, endpoints_path, read_endpoints
    from causalscope.daemon.client.errors import QueryError, StoreError
    from causalscope.daemon.client.local import check_select
    from causalscope.daemon.client.query import QueryResult, query_endpoint
    from causalscope.daemon.store.reader import SessionReader
    from causalscope.daemon.store.schema import SCHEMA_VERSION
    from causalscope.daemon.store.summary import Distribution, SessionSummary, summarize
    from causalscope.daemon.store.writer import PendingExposure, SeenState, SessionStore

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

# name -> the module that defines it
_WHERE = {
    "SCHEMA_VERSION": "causalscope.daemon.store.schema",
    "Distribution": "causalscope.daemon.store.summary",
    "Endpoints": "causalscope.daemon.client.endpoints",
    "PendingExposure": "causalscope.daemon.store.writer",
    "QueryError": "causalscope.daemon.client.errors",
    "QueryResult": "causalscope.daemon.client.query",
    "SeenState": "causalscope.daemon.store.writer",
    "SessionReader": "causalscope.daemon.store.reader",
    "SessionStore": "causalscope.daemon.store.writer",
    "SessionSummary": "causalscope.daemon.store.summary",
    "StoreError": "causalscope.daemon.client.errors",
    "check_select": "causalscope.daemon.client.local",
    "endpoints_path": "causalscope.daemon.client.endpoints",
    "query_endpoint": "causalscope.daemon.client.query",
    "read_endpoints": "causalscope.daemon.client.endpoints",
    "summarize": "causalscope.daemon.store.summary",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
