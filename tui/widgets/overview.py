"""The overview line: how the session is going, at a glance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.widgets import Static

from causalscope.tui.format import overview_text

__all__ = ["Overview"]


class Overview(Static):
    """State (live, paused, lost, finished), counts, queue, pace, workers, devices, top cause."""

    def show(
        self,
        status: Mapping[str, Any] | None,
        *,
        name: str,
        live: bool,
        connection: str,
        shown: int,
        total: int,
        causes: Text | None = None,
        reconstruction: Text | None = None,
    ) -> None:
        """Redraw from the latest status (and the causal model's and the running
        reconstructions' headlines)."""
        self.update(
            overview_text(
                status,
                name=name,
                live=live,
                connection=connection,
                shown=shown,
                total=total,
                causes=causes,
                reconstruction=reconstruction,
            )
        )
