"""The alerts panel: the daemon's alerts, newest first, each with what to do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from causalscope.tui.format import alert_text

__all__ = ["AlertsPanel"]

_SHOWN = 50


class AlertsPanel(VerticalScroll, can_focus=False):
    """The latest alerts (sanity-gate failures and trends) with their advice."""

    def compose(self) -> ComposeResult:
        yield Static(id="alerts-text")

    def show(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """Redraw from all alerts so far (oldest first)."""
        fails = sum(
            1
            for a in alerts
            if isinstance(a.get("data"), Mapping) and a["data"].get("severity") == "fail"
        )
        self.border_title = f"Alerts {len(alerts)}" + (f" ({fails} fail)" if fails else "")
        if not alerts:
            body = Text("no alerts", style="dim")
        else:
            body = Text("\n").join(alert_text(a) for a in reversed(alerts[-_SHOWN:]))
        self.query_one("#alerts-text", Static).update(body)
