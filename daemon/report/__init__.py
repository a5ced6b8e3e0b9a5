"""A session's report: one self-contained HTML file (no network needed to open it).

:func:`render_report` reads a finished (or running, read-only) session file and returns the
page: a headline verdict, the summary, plots over time and histograms, the ranked causes with
error bars and advice, the worst exposures with thumbnails and why, the 2D classes, the FSC and
resolution against particles where they exist, and the settings. ``causalscope report`` writes
it to a file; an HTTP server can return it as it is.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["render_report"]


def render_report(session_path: Path) -> str:
    """The report of the session in ``session_path`` (its ``.duckdb`` file), as HTML text.

    Raises
    ------
    causalscope.models.errors.InputError
        The file is missing or not a session database.
    """
    from causalscope.daemon.client.local import open_session_file
    from causalscope.daemon.report.data import gather
    from causalscope.daemon.report.html import page

    path = Path(session_path)
    connection = open_session_file(path)
    try:
        data = gather(connection, base=path.resolve().parent)
    finally:
        connection.close()
    return page(data)
