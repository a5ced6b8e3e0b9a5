"""Pausing new work while storage fails (a full disk, a database that cannot be written).

The scheduler keeps what it could not write in memory and asks :class:`StoragePause` whether
to try again; the operator is told once per distinct reason, not at every retry.
"""

from __future__ import annotations

import errno
import time
from typing import Protocol

from causalscope.models.errors import CausalscopeError

__all__ = ["StoragePause"]


class _Problems(Protocol):
    def problem(self, title: str, message: str) -> None: ...


class StoragePause:
    """Whether new work is paused after a storage error, and the message that says so.

    Parameters
    ----------
    retry_after_s
        Pause before trying again.
    reporter
        Told of each new reason (``problem(title, message)``).
    """

    def __init__(self, retry_after_s: float, reporter: _Problems) -> None:
        self._retry_after_s = retry_after_s
        self._reporter = reporter
        self._until = 0.0
        self._reason = ""

    def active(self, now: float) -> bool:
        """True while paused (``now``: ``time.monotonic()``)."""
        return now < self._until

    def store_failed(self, error: CausalscopeError) -> None:
        """The store could not write: pause, and say so unless this reason was just said."""
        self._until = time.monotonic() + self._retry_after_s
        full = "No space left on device" in error.message or "quota" in error.message.lower()
        title = "Session database disk full" if full else error.title
        # said once per kind of failure: the message names the exposure whose write failed, which
        # changes from one retry to the next while the disk stays full
        reason = title if full else error.message
        if reason != self._reason:
            self._reason = reason
            self._reporter.problem(
                title,
                f"{error.message}. New work is paused and retried every "
                f"{self._retry_after_s:g} s; nothing is lost (unfinished exposures stay pending "
                "in the session and resume after a restart).",
            )

    def outputs_failed(self, error: OSError, movie_path: str) -> None:
        """Writing an exposure's micrographs failed: pause, and say why once."""
        self._until = time.monotonic() + self._retry_after_s
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        title = "Output disk full" if full else "Cannot write outputs"
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        message = (
            f"writing the micrographs of {movie_path} failed: {error.strerror or error}{where}"
        )
        if message != self._reason:
            self._reason = message
            self._reporter.problem(
                title,
                f"{message}. Free space or fix the output folder; processing is paused and "
                f"retried every {self._retry_after_s:g} s, and no exposure is lost.",
            )
