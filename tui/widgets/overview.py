"""The overview line: how the session is going, at a glance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.widgets import Static

from tui.format import overview_text

__all__ = ["Overview"]


class Overview(Static):
    """State (live, paused, lost, finished), counts, queue, pace, workers and devices."""

    def show(
        self,
        status: Mapping[str, Any] | None,
        *,
        name: str,
        live: bool,
        connection: str,
        shown: int,
        total: int,
    ) -> None:
        """Redraw from the latest status."""
        self.update(
            overview_text(
                status, name=name, live=live, connection=connection, shown=shown, total=total
            )
        )
