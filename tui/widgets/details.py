"""The details pane: the selected exposure's CTF, motion, flags with reasons, label, causes
and score."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from causalscope.tui.causes import exposure_causes_text
from causalscope.tui.format import details_text
from causalscope.tui.scores import score_text

__all__ = ["DetailsPane"]


class DetailsPane(VerticalScroll, can_focus=False):
    """A scrolling block of text about one exposure."""

    def compose(self) -> ComposeResult:
        yield Static(id="details-text")

    def show(
        self,
        row: Mapping[str, Any] | None,
        label: str | None,
        quarantine_reason: str | None,
        causal: Mapping[str, Any] | None = None,
        score: Mapping[str, Any] | None = None,
    ) -> None:
        """Describe ``row`` (None: nothing selected), the causal model's verdict on it and its
        score."""
        causes = None if row is None else exposure_causes_text(causal)
        scored = None if row is None else score_text(score)
        self.query_one("#details-text", Static).update(
            details_text(row, label, quarantine_reason, causes=causes, score=scored)
        )
