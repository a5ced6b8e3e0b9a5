"""The causes panel: what costs the session resolution, ranked, with error bars and advice."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from causalscope.tui.causes import CausesState, causes_body, causes_title

__all__ = ["CausesPanel", "CausesView"]


class CausesView:
    """A Rich renderable: :func:`~tui.causes.causes_body` drawn to the width it is given."""

    def __init__(self, state: CausesState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield causes_body(self.state, options.max_width)


class CausesPanel(VerticalScroll, can_focus=False):
    """The causal model's latest ranking of the session's causes, one line each."""

    def compose(self) -> ComposeResult:
        yield Static(id="causes-text")

    def show(self, state: CausesState) -> None:
        """Redraw from the latest ranking."""
        self.border_title = causes_title(state)
        self.query_one("#causes-text", Static).update(CausesView(state))
