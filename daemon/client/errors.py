"""Errors of a session's endpoints and file, meant for users: a title and a message naming the
database file or the endpoint, and the cause."""

from __future__ import annotations

from causalscope.models.errors import CausalscopeError

__all__ = ["CausalscopeError", "ControlError", "QueryError", "StoreError"]


class StoreError(CausalscopeError):
    """The session database or one of its endpoints failed: a full disk, a lock, no answer.

    A write that raises this was rolled back: nothing of it remains in the database, and the
    same call can be retried.
    """


class QueryError(StoreError):
    """A query was refused (not a single SELECT) or failed (a syntax or binder error)."""


class ControlError(CausalscopeError):
    """A control request could not be sent or was refused."""
