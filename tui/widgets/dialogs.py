"""Modal screens: the help screen and the threshold dialog."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

__all__ = ["KEYS", "THRESHOLD_LABELS", "HelpScreen", "ThresholdDialog"]

#: (key, what it does), as the help screen lists them.
KEYS: tuple[tuple[str, str], ...] = (
    ("↑↓", "move in the exposure table (PgUp, PgDn, Home, End)"),
    ("a", "accept the selected exposure (stored as a label)"),
    ("r", "reject the selected exposure (stored as a label)"),
    ("p", "pause / resume processing (those in flight finish)"),
    ("t", "change a threshold: choose, type the value, Enter"),
    ("/", "filter: pass warn fail seen quarantined flagged"),
    ("", "  accepted rejected unlabelled, or any text"),
    ("Esc", "clear the filter / close a dialog"),
    ("s", "sort: seen, gate, resolution, ice, drift, defocus"),
    ("g", "graphs: plots and pictures instead of the table"),
    ("c", "causes of lost resolution, ranked (instead of the table"),
    ("", "  when small; hides them when tall); ? = still learning"),
    ("m", "classes & map: the running reconstructions (m or Esc: back)"),
    ("←→↑↓", "  there: move between the 2D classes (Home, End)"),
    ("a r", "  there: select / reject the class (the next update uses it)"),
    ("?", "this help"),
    ("q", "quit (the session goes on)"),
)

_OVERVIEW_HELP = (
    "Overview: live / paused / daemon lost / finished; elapsed; done of seen; gate verdicts; "
    "queue+in flight; processing against acquisition rate per minute (keeping up?); Ray "
    "workers and devices; the cause costing the most resolution (the causal model's). Alerts "
    "come from the daemon, newest first, each with what to do. Causes: each cause's mean share "
    "of the resolution lost per exposure (█ bar, ├─●─┤ mean ± sd, on one scale), P(top) the "
    "probability it costs the most, ? still learning; advice for the first. Classes & map: "
    "the map's resolution (FSC 0.143) and the forecast; each class average with its number "
    "(from 1), particles and resolution, green = selected, red and faded = rejected, ✓/✗ = "
    "your label; the FSC (cyan masked, grey unmasked; red 0.143, yellow 0.5, green the "
    "resolution); resolution against particles, the forecast dotted, the target green."
)

#: Threshold names (the status's ``thresholds`` keys) and how they are shown.
THRESHOLD_LABELS: dict[str, str] = {
    "ctf_fit_resolution_angstrom": "CTF fit resolution (Å): worse than this fails",
    "total_drift_px": "total drift (px): more than this fails",
    "ice_thickness_nm": "ice thickness (nm): thicker than this fails",
}


class HelpScreen(ModalScreen[None]):
    """Every key, and what the overview shows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "close"),
    ]

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("causalscope dashboard — keys\n\n", style="bold")
        for key, what in KEYS:
            text.append(f"{key:>4}  ", style="bold cyan")
            text.append(f"{what}\n")
        text.append("\n")
        text.append(_OVERVIEW_HELP, style="dim")
        with VerticalScroll(id="help-body"):
            yield Static(text)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class ThresholdDialog(ModalScreen[tuple[str, float] | None]):
    """Choose a threshold and type its new value; returns ``(name, value)`` or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]
    AUTO_FOCUS = "#threshold-names"

    def __init__(self, thresholds: Mapping[str, float]) -> None:
        super().__init__()
        self.thresholds = dict(thresholds)
        self.chosen = next(iter(THRESHOLD_LABELS))

    def compose(self) -> ComposeResult:
        with Vertical(id="threshold-box"):
            yield Label("Threshold (↑↓ choose, Enter)", id="threshold-title")
            yield OptionList(
                *(
                    Option(f"{label}  [now {self.thresholds.get(name, '-')}]", id=name)
                    for name, label in THRESHOLD_LABELS.items()
                ),
                id="threshold-names",
            )
            yield Input(placeholder="new value, Enter", type="number", id="threshold-value")
            yield Label("", id="threshold-error")

    def on_mount(self) -> None:
        self.query_one("#threshold-names", OptionList).highlighted = 0

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self.chosen = event.option.id

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.chosen = event.option.id
        box = self.query_one("#threshold-value", Input)
        box.value = str(self.thresholds.get(self.chosen, ""))
        box.focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        try:
            number = float(event.value)
        except ValueError:
            number = float("nan")
        if not number > 0:
            self.query_one("#threshold-error", Label).update(
                f"{event.value!r} is not a positive number"
            )
            return
        self.dismiss((self.chosen, number))

    def action_cancel(self) -> None:
        self.dismiss(None)
