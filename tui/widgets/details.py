"""The details pane: the selected exposure's CTF, motion, flags with reasons, and label."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.format import details_text

__all__ = ["DetailsPane"]


class DetailsPane(VerticalScroll, can_focus=False):
    """A scrolling block of text about one exposure."""

    def compose(self) -> ComposeResult:
        yield Static(id="details-text")

    def show(
        self, row: Mapping[str, Any] | None, label: str | None, quarantine_reason: str | None
    ) -> None:
        """Describe ``row`` (None: nothing selected)."""
        self.query_one("#details-text", Static).update(details_text(row, label, quarantine_reason))
