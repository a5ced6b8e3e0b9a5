"""The running reconstructions: the 2D class gallery (pictures), the FSC curve and resolution
against particles with the forecast, under a two-line verdict.

Each class is a :class:`ClassTile` (the half-block picture widget): its border green when the
class is selected, red and faded when rejected, heavy under the cursor; its title the class
number (with ✓ or ✗ when the operator labelled it), its subtitle particles and resolution.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from rich.console import Console, ConsoleOptions
from rich.console import RenderResult as RichRenderResult
from textual.app import ComposeResult, RenderResult
from textual.binding import Binding, BindingType
from textual.containers import Container, ScrollableContainer, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from causalscope.tui.messages import ClassHighlighted, ClassLabelRequested
from causalscope.tui.reconstruction import (
    ReconstructionState,
    Row,
    class_info_text,
    class_subtitle,
    class_title,
    classes_title,
    fsc_frequencies,
    labels_note,
    verdict_text,
)
from causalscope.tui.widgets.image import HalfBlockImage

__all__ = [
    "ClassGallery",
    "ClassInfoView",
    "ClassTile",
    "FscPlot",
    "ReconstructionPanel",
    "ResolutionPlot",
    "VerdictView",
]

#: Narrowest tile (columns): the gallery fits as many to a row as its width holds.
TILE_MIN_WIDTH = 14


class ClassTile(HalfBlockImage):
    """One class average with its number, particles and resolution; coloured by selection."""

    def __init__(self, class_index: int) -> None:
        super().__init__(id=f"class-{class_index}")
        self.class_index = class_index
        self.add_class("class-tile")

    def draw(
        self,
        state: ReconstructionState,
        row: Row,
        image: np.ndarray | None,
        *,
        cursor: bool,
        note: str,
    ) -> None:
        """Show the class as ``state`` has it (``image`` None: ``note`` instead)."""
        selected = state.selected(row)
        self.set_class(selected, "-selected")
        self.set_class(not selected, "-rejected")
        self.set_class(cursor, "-cursor")
        self.border_subtitle = class_subtitle(row)
        self.show(image, "", note)
        self.border_title = class_title(state, row).markup


class ClassGallery(ScrollableContainer, can_focus=True):
    """The latest class set's averages as pictures, with a cursor (arrows) and select/reject
    (``a``/``r``, sent to the session by the app)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1)", "previous", show=False),
        Binding("right", "move(1)", "next", show=False),
        Binding("up", "move_row(-1)", "up", show=False),
        Binding("down", "move_row(1)", "down", show=False),
        Binding("home", "move_to(0)", "first", show=False),
        Binding("end", "move_to(-1)", "last", show=False),
        Binding("a", "label('select')", "select"),
        Binding("r", "label('reject')", "reject"),
        Binding("escape", "app.reconstructions", "back"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cursor = 0
        self._rows: list[Row] = []

    @property
    def columns(self) -> int:
        """Tiles to a row at the gallery's width."""
        return max(1, self.scrollable_content_region.width // TILE_MIN_WIDTH)

    def on_resize(self) -> None:
        self.styles.grid_size_columns = self.columns

    def current(self) -> Row | None:
        """The class under the cursor, or None."""
        return self._rows[self.cursor] if self._rows else None

    def draw(
        self,
        state: ReconstructionState,
        tiles: Sequence[np.ndarray] | None,
        note: str,
    ) -> None:
        """Redraw every class (tiles mounted or removed to match the class set)."""
        rows = state.classes()
        self._rows = rows
        shown = list(self.query(ClassTile))
        if len(shown) > len(rows):
            for tile in shown[len(rows) :]:
                tile.remove()
            shown = shown[: len(rows)]
        if len(shown) < len(rows):
            new = [ClassTile(int(r["class_index"])) for r in rows[len(shown) :]]
            self.mount_all(new)
            shown += new
        self.cursor = min(self.cursor, max(0, len(rows) - 1))
        for i, (tile, row) in enumerate(zip(shown, rows, strict=True)):
            image = tiles[i] if tiles is not None and i < len(tiles) else None
            tile.draw(state, row, image, cursor=i == self.cursor, note=note)

    def _place(self, index: int) -> None:
        if not self._rows:
            return
        index = max(0, min(len(self._rows) - 1, index))
        tiles = list(self.query(ClassTile))
        if self.cursor < len(tiles):
            tiles[self.cursor].set_class(False, "-cursor")
        self.cursor = index
        if index < len(tiles):
            tiles[index].set_class(True, "-cursor")
            self.scroll_to_widget(tiles[index], animate=False)
        self.post_message(ClassHighlighted(int(self._rows[index]["class_index"])))

    def action_move(self, step: int) -> None:
        """Move the cursor by ``step`` classes."""
        self._place(self.cursor + step)

    def action_move_row(self, step: int) -> None:
        """Move the cursor by ``step`` rows of tiles."""
        self._place(self.cursor + step * self.columns)

    def action_move_to(self, index: int) -> None:
        """Move the cursor to a class (-1: the last)."""
        self._place(index if index >= 0 else len(self._rows) - 1)

    def action_label(self, label: str) -> None:
        """Ask for the class under the cursor to be selected or rejected."""
        row = self.current()
        if row is not None:
            self.post_message(ClassLabelRequested(int(row["class_index"]), label))


class FscPlot(PlotextPlot):
    """The latest map's gold-standard FSC, masked and unmasked, against resolution, with the
    0.143 and 0.5 lines and the resolution marked."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.map: Row | None = None

    def set_data(self, volume: Row | None) -> None:
        """The map to draw (None: none yet); redraws."""
        self.map = volume
        self.refresh()

    def render(self) -> RenderResult:
        plt = self.plt
        plt.clear_figure()
        volume = self.map or {}
        masked = _curve(volume.get("fsc_masked"))
        unmasked = _curve(volume.get("fsc_unmasked"))
        pixel = volume.get("pixel_size_angstrom")
        if not masked or not isinstance(pixel, int | float) or pixel <= 0:
            plt.title("FSC")
            _empty(plt, "no map yet")
            return super().render()
        resolution = volume.get("resolution_angstrom")
        shown = "not at 0.143" if resolution is None else f"{resolution:.1f} Å at 0.143"
        legend = " · cyan masked, grey unmasked"
        plt.title(f"FSC {shown}" + (legend if self.size.width >= 60 else ""))
        x = fsc_frequencies(len(masked), float(pixel))
        if unmasked:
            xu = fsc_frequencies(len(unmasked), float(pixel))
            plt.plot(xu, unmasked, marker="braille", color="gray")
        plt.plot(x, masked, marker="braille", color="cyan")
        plt.hline(0.143, color="red")
        plt.hline(0.5, color="yellow")
        if isinstance(resolution, int | float) and resolution > 0:
            plt.vline(1.0 / resolution, color="green")
        plt.ylim(min(0.0, *masked), 1.0)
        plt.xlim(0.0, x[-1])
        ticks = _resolution_ticks(x[-1], float(pixel))
        plt.xticks([1.0 / t for t in ticks], [f"{t:g}Å" for t in ticks])
        plt.yticks([0.143, 0.5, 1.0], [".143", ".5", "1"])
        return super().render()


def _curve(values: object) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) if isinstance(v, int | float) else 0.0 for v in values]


def _empty(plt: object, words: str) -> None:
    plt.text(words, x=0.5, y=0.5, alignment="center")  # type: ignore[attr-defined]
    plt.xlim(0, 1)  # type: ignore[attr-defined]
    plt.ylim(0, 1)  # type: ignore[attr-defined]


def _resolution_ticks(nyquist_per_angstrom: float, pixel: float) -> list[float]:
    """A few round resolutions (Å) between 4 x Nyquist and Nyquist, coarsest first."""
    finest = 1.0 / nyquist_per_angstrom  # 2 * pixel
    candidates = (50, 30, 20, 15, 10, 8, 6, 5, 4, 3.5, 3, 2.5, 2, 1.8, 1.5, 1.2, 1)
    ticks = [float(t) for t in candidates if finest * 1.05 <= t <= 4 * finest]
    if len(ticks) > 4:  # keep four, spread over the range
        step = (len(ticks) - 1) / 3
        ticks = [ticks[round(i * step)] for i in range(4)]
    return ticks or [round(finest, 1)]


class ResolutionPlot(PlotextPlot):
    """Each update's map resolution against its particles (log scale), the forecast beyond it
    (dotted: to twice the particles and to the target particles) and the target (green)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = ReconstructionState()

    def set_data(self, state: ReconstructionState) -> None:
        """The updates to draw; redraws."""
        self.state = state
        self.refresh()

    def render(self) -> RenderResult:
        plt = self.plt
        plt.clear_figure()
        points = self.state.map_points()
        forecast = self.state.forecast_points()
        if not points:
            plt.title("resolution Å against particles")
            _empty(plt, "no map yet")
            return super().render()
        plt.title(
            "resolution Å against particles"
            + (" · forecast dotted" if self.size.width >= 60 else "")
        )
        xs = [math.log10(n) for n, _ in points]
        plt.plot(xs, [d for _, d in points], marker="braille", color="cyan")
        if len(forecast) > 1:
            fx, fy = _dotted(forecast)
            plt.scatter(fx, fy, marker="braille", color="magenta")
        update = self.state.latest_with("forecast")
        target = None if update is None else update["forecast"].get("target_resolution_angstrom")
        if isinstance(target, int | float):
            plt.hline(float(target), color="green")
        counts = [n for n, _ in [*points, *forecast]]
        low, high = math.log10(min(counts)), math.log10(max(counts))
        margin = max(0.05, 0.04 * (high - low))
        plt.xlim(low - margin, high + margin)
        ticks = _count_ticks(min(counts), max(counts))
        plt.xticks([math.log10(t) for t in ticks], [_tick_count(t) for t in ticks])
        plt.yfrequency(3)
        return super().render()


def _dotted(points: Sequence[tuple[float, float]], per_step: int = 16) -> tuple[list, list]:
    """Dots along the segments between ``points`` (x as log10 particles), for a dotted line."""
    xs: list[float] = []
    ys: list[float] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        for k in range(0, per_step + 1, 2):
            t = k / per_step
            xs.append(math.log10(x0) + t * (math.log10(x1) - math.log10(x0)))
            ys.append(y0 + t * (y1 - y0))
    return xs, ys


def _count_ticks(low: float, high: float) -> list[float]:
    """Round particle counts (1, 2, 5 times a power of ten) between ``low`` and ``high``."""
    ticks = []
    for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for step in (1, 2, 5):
            value = step * 10.0**power
            if low <= value <= high:
                ticks.append(value)
    if len(ticks) > 4:
        ticks = ticks[:: math.ceil(len(ticks) / 4)]
    return ticks or [low, high]


def _tick_count(n: float) -> str:
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k" if n >= 1e3 else f"{n:g}"


class ClassInfoView:
    """A Rich renderable: :func:`~tui.reconstruction.class_info_text` fitted to its width."""

    def __init__(self, state: ReconstructionState, row: Row | None) -> None:
        self.state = state
        self.row = row

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RichRenderResult:
        yield class_info_text(self.state, self.row, options.max_width)


class VerdictView:
    """A Rich renderable: :func:`~tui.reconstruction.verdict_text` fitted to its width."""

    def __init__(self, state: ReconstructionState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RichRenderResult:
        yield verdict_text(self.state, options.max_width)


class ReconstructionPanel(Vertical, can_focus=False):
    """The verdict, the class gallery with the class under the cursor, and the two plots."""

    def compose(self) -> ComposeResult:
        yield Static(id="recon-verdict")
        with Container(id="recon-body"):
            with Vertical(id="gallery-box"):
                yield ClassGallery(id="gallery")
                yield Static(id="class-info")
            with Container(id="recon-plots"):
                yield FscPlot(id="recon-fsc")
                yield ResolutionPlot(id="recon-resolution")

    @property
    def gallery(self) -> ClassGallery:
        """The class gallery."""
        return self.query_one("#gallery", ClassGallery)

    def draw(
        self,
        state: ReconstructionState,
        tiles: Sequence[np.ndarray] | None,
        *,
        note: str,
        error: str = "",
        plots: bool = True,
    ) -> None:
        """Redraw from ``state`` and the pictures (``tiles`` None: ``note`` in each tile, and
        ``error`` says why there are none); ``plots`` False leaves the plots as they are."""
        self.query_one("#recon-verdict", Static).update(VerdictView(state))
        gallery = self.gallery
        gallery.draw(state, tiles, note)
        gallery.border_title = classes_title(state)
        gallery.set_class(bool(error), "-error")
        gallery.border_subtitle = f"no pictures: {error}" if error else labels_note(state)
        self.show_class(state)
        if plots:
            self.query_one("#recon-fsc", FscPlot).set_data(state.reconstruction)
            self.query_one("#recon-resolution", ResolutionPlot).set_data(state)

    def show_class(self, state: ReconstructionState) -> None:
        """Describe the class under the cursor."""
        self.query_one("#class-info", Static).update(ClassInfoView(state, self.gallery.current()))
