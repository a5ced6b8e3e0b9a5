"""Errors meant for users: a short title and a message naming the file and the bad value.

The CLI prints ``title`` and ``message`` and exits with a non-zero status; it never shows a
traceback for a :class:`CausalscopeError`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CausalscopeError", "ConfigError", "FormatError", "InputError"]


class CausalscopeError(Exception):
    """Base of every error that is the user's input rather than our bug.

    Parameters
    ----------
    title
        A few words: what failed ("Truncated MRC movie").
    message
        What was seen and what was expected; names the file and the value.
    path
        The file concerned, when there is one.
    """

    def __init__(self, title: str, message: str, *, path: str | Path | None = None) -> None:
        self.title = title
        self.message = message
        self.path = None if path is None else Path(path)
        super().__init__(f"{title}: {message}")


class ConfigError(CausalscopeError):
    """A setting has the wrong type, unit or range."""


class FormatError(CausalscopeError):
    """A file is not in the format it claims, or is incomplete or corrupt."""


class InputError(CausalscopeError):
    """A command-line argument or other direct input is invalid."""
