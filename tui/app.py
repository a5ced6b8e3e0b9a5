"""The dashboard app: a thin, message-driven view of one session (logic stays in the daemon).

A worker thread reads the session's history from a :class:`~tui.source.SessionSource`, then
follows it and posts messages (:mod:`tui.messages`). Exposure rows are buffered and shown in
batches at ``settings.tui.refresh_hz``; actions run in worker threads and come back as
:class:`~tui.messages.ActionFinished`. ``m`` shows the running reconstructions in the body's
place (the class gallery, the FSC, resolution against particles); its pictures are fetched
once per class set.
"""

from __future__ import annotations

import gc
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input

from causalscope.config import AlertSettings, Settings, TuiSettings
from causalscope.daemon.client import CausalscopeError
from causalscope.tui.causes import causes_headline
from causalscope.tui.format import RowFilter
from causalscope.tui.messages import (
    ActionFinished,
    AlertRaised,
    CausalUpdated,
    ClassHighlighted,
    ClassLabelRequested,
    ClassLabelStored,
    ConnectionChanged,
    EvaluationUpdated,
    ExposureUpdated,
    GalleryLoaded,
    HistoryLoaded,
    LabelStored,
    QuarantineAdded,
    ScoreUpdated,
    StatusUpdated,
    ThumbnailLoaded,
    message_for,
)
from causalscope.tui.reconstruction import reconstruction_headline
from causalscope.tui.source import SessionSource
from causalscope.tui.state import SessionState
from causalscope.tui.widgets import (
    AlertsPanel,
    CausesPanel,
    DetailsPane,
    ExposureTable,
    HelpScreen,
    ImagesPanel,
    Overview,
    PlotsPanel,
    ReconstructionPanel,
    ThresholdDialog,
)
from causalscope.tui.widgets.image import load_class_gallery, load_thumbnails

__all__ = ["Dashboard", "make_app"]

# Dashboard actions, refused while a dialog is open (the dialog has the keys then).
_ACTIONS = frozenset(
    {"label", "pause", "threshold", "filter", "sort", "graphs", "causes", "reconstructions", "help"}
)
_PLOT_INTERVAL_S = 1.0  # plots are the costliest redraw: at most this often


class Dashboard(App[None]):
    """The operator's dashboard for one session.

    Parameters
    ----------
    settings
        The dashboard's settings (refresh rate, theme).
    source
        Where the session comes from.
    alerts
        The alert thresholds, drawn as lines on the plots until the session's status says
        otherwise; default: the built-in ones.
    """

    # package data, so that an installed dashboard finds it as the source tree does
    CSS_PATH = Path(str(resources.files("causalscope.tui").joinpath("app.tcss")))
    TITLE = "causalscope"
    AUTO_FOCUS = "#table"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (140, "-wide")]  # noqa: RUF012 (Textual's type)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "label('accept')", "accept"),
        Binding("r", "label('reject')", "reject"),
        Binding("p", "pause", "pause/resume"),
        Binding("t", "threshold", "threshold"),
        Binding("slash", "filter", "filter"),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding("s", "sort", "sort"),
        Binding("g", "graphs", "graphs"),
        Binding("c", "causes", "causes"),
        Binding("m", "reconstructions", "classes & map"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self, settings: TuiSettings, source: SessionSource, *, alerts: AlertSettings | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.source = source
        self.state = SessionState(
            thresholds=(alerts or AlertSettings()).thresholds(),
            connection="connecting" if source.live else "ok",
        )
        self.history_loaded = threading.Event()
        self._pending: list[dict[str, Any]] = []
        self._dirty: set[str] = set()
        self._stop = threading.Event()
        self._last_plot = 0.0
        self._image_timer: Timer | None = None
        self._image_id: str | None = None
        # the class set whose pictures are shown or asked for: (version, tiles, why none)
        self._gallery: tuple[int | None, list[Any] | None, str] = (None, None, "")

    # -- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Overview(id="overview")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield Input(placeholder="filter: fail warn flagged rejected or text", id="filter")
                yield ExposureTable(id="table")
                yield CausesPanel(id="causes")
                with Horizontal(id="lower"):
                    yield DetailsPane(id="details")
                    yield AlertsPanel(id="alerts")
            with VerticalScroll(id="right"):
                yield PlotsPanel(id="plots")
                yield ImagesPanel(id="images")
        yield ReconstructionPanel(id="recon")
        yield Footer()

    def on_mount(self) -> None:
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        self.query_one("#details", DetailsPane).border_title = "Details"
        self.query_one("#alerts", AlertsPanel).show([])
        self._show_causes()
        self._update_overview()
        self._update_table_title()
        self.set_interval(1.0 / self.settings.refresh_hz, self._redraw)
        self._run_source()

    @property
    def table(self) -> ExposureTable:
        """The exposure table."""
        return self.query_one("#table", ExposureTable)

    def _graphs_visible(self) -> bool:
        return bool(self.query_one("#right").display)

    def _causes_visible(self) -> bool:
        panel = self.query_one("#causes", CausesPanel)
        return bool(panel.display) and bool(self.query_one("#left").display)

    def _recon_visible(self) -> bool:
        return self.screen.has_class("-recon")

    def _wide(self) -> bool:
        """The large layout: everything at once."""
        return self.screen.has_class("-wide") and self.screen.has_class("-tall")

    def _short(self) -> bool:
        """The compact layout: the causes panel is swapped in by `c` instead of always shown."""
        return not self.screen.has_class("-tall")

    # -- the source -------------------------------------------------------------------------

    @work(thread=True, group="source", name="source")
    def _run_source(self) -> None:
        try:
            snapshot = self.source.history()
        except CausalscopeError as error:
            self.post_message(ConnectionChanged("lost", error.message))
        else:
            self.post_message(HistoryLoaded(snapshot))
        self.source.follow(self._post, self._stop)

    def _post(self, topic: str, payload: dict[str, Any]) -> None:
        message = message_for(topic, payload)
        if message is not None:
            self.post_message(message)

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        self.state.load(message.snapshot)
        self._pending.clear()
        self.table.rebuild(
            self.state.rows.values(), self.state.labels.get, keep=self.table.selected_id()
        )
        self._update_table_title()
        self._image_id = None
        self._schedule_images()
        self._dirty |= {"overview", "alerts", "plots", "details", "causes", "recon"}
        self._redraw()
        # Thousands of long-lived rows: keep them out of the collector's full passes, which
        # would otherwise stall the screen for a fraction of a second every so often.
        gc.freeze()
        self.history_loaded.set()

    def on_exposure_updated(self, message: ExposureUpdated) -> None:
        self._pending.append(message.row)

    def on_status_updated(self, message: StatusUpdated) -> None:
        if self.state.take_status(message.status):
            self._dirty.add("plots")
        if self.state.connection == "connecting":
            self.state.connection = "ok"
        self._dirty.add("overview")

    def on_causal_updated(self, message: CausalUpdated) -> None:
        self.state.take_causal_update(message.update)
        self._dirty |= {"causes", "overview", "details"}

    def on_evaluation_updated(self, message: EvaluationUpdated) -> None:
        self.state.take_evaluation(message.update)
        self._dirty |= {"recon", "overview"}

    def on_score_updated(self, message: ScoreUpdated) -> None:
        if self.state.take_score(message.score) == self.table.selected_id():
            self._dirty.add("details")

    def on_class_label_stored(self, message: ClassLabelStored) -> None:
        self.state.take_class_label(message.class_index, message.label)
        self._dirty |= {"recon", "overview"}

    def _show_causes(self) -> None:
        self.query_one("#causes", CausesPanel).show(self.state.causes_state())

    def on_alert_raised(self, message: AlertRaised) -> None:
        self.state.alerts.append(message.alert)
        self._dirty.add("alerts")
        data = message.alert.get("data") or {}
        self.notify(
            str(data.get("advice") or ""),
            title=str(message.alert.get("message", "alert")),
            severity="error" if data.get("severity") == "fail" else "warning",
        )

    def on_label_stored(self, message: LabelStored) -> None:
        self._set_label(message.exposure_id, message.label)

    def on_quarantine_added(self, message: QuarantineAdded) -> None:
        row = self.state.take_quarantine(message.row)
        if row is not None:
            self._pending.append(row)
        self._dirty.add("details")

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        if message.state == "lost":
            self.state.connection = "lost"
            self.notify(
                f"No word from the session {message.detail}; reconnecting…",
                title="Daemon lost",
                severity="error",
            )
        else:
            self.state.connection = "ok"
            self.notify("Reconnected; history re-read", title="Daemon back")
        self._dirty.add("overview")

    # -- batched redraws ----------------------------------------------------------------------

    def _redraw(self) -> None:
        if len(self.screen_stack) != 1:
            # a dialog has the screen: draw (and take the pending rows) after it closes; or
            # the app is closing and its screen is gone already
            return
        try:
            self._redraw_dirty()
        except (NoMatches, ScreenStackError):
            # every queried widget is composed at start: one can only be missing when the
            # timer fires while the app is closing and its widgets (or screen) are going
            return

    def _redraw_dirty(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            changed: dict[str, dict[str, Any]] = {}
            for row in batch:
                eid = str(row["exposure_id"])
                self.state.rows[eid] = row
                changed[eid] = row
            self.table.upsert(changed.values(), self.state.labels.get)
            self._dirty |= {"overview", "plots", "details"}
            self._update_table_title()
        if "causes" in self._dirty:
            self._show_causes()
            self._dirty.add("overview")  # its headline
        if "overview" in self._dirty:
            self._update_overview()
        if "alerts" in self._dirty:
            self.query_one("#alerts", AlertsPanel).show(self.state.alerts)
        if "details" in self._dirty:
            self._show_details()
        if "plots" in self._dirty and self._graphs_visible():
            now = time.monotonic()
            if now - self._last_plot >= _PLOT_INTERVAL_S or not self._last_plot:
                self._last_plot = now
                done = [r for r in self.state.rows.values() if r.get("state") == "done"]
                self.query_one("#plots", PlotsPanel).update_plots(done, self.state.thresholds)
                self._dirty.discard("plots")
        if self._dirty & {"recon", "classes"} and self._recon_visible():
            self._draw_reconstructions(plots="recon" in self._dirty)
            self._dirty -= {"recon", "classes"}
        self._dirty &= {"plots", "recon", "classes"}

    def _update_overview(self) -> None:
        self.query_one("#overview", Overview).show(
            self.state.status,
            name=self.source.name,
            live=self.source.live,
            connection=self.state.connection,
            shown=self.table.row_count,
            total=len(self.state.rows),
            causes=causes_headline(self.state.causes_state(), hint=not self._causes_visible()),
            # the reconstructions' own view says it all: no headline above it
            reconstruction=None
            if self._recon_visible()
            else reconstruction_headline(self.state.reconstruction_state(), hint=True),
        )

    def _update_table_title(self) -> None:
        table = self.table
        title = f"Exposures {table.row_count}/{len(self.state.rows)} · sort {table.sort_name}"
        if table.row_filter:
            title += f" · filter “{table.row_filter.text}”"
        table.border_title = title

    def _show_details(self) -> None:
        eid = self.table.selected_id()
        self.query_one("#details", DetailsPane).show(
            None if eid is None else self.state.rows.get(eid),
            None if eid is None else self.state.labels.get(eid),
            None if eid is None else self.state.quarantine.get(eid),
            None if eid is None else self.state.causal.get(eid),
            None if eid is None else self.state.scores.get(eid),
        )

    def _set_label(self, exposure_id: str, label: str) -> None:
        self.state.labels[exposure_id] = label
        row = self.state.rows.get(exposure_id)
        if row is not None:
            self.table.set_label(row, label)
        self._dirty.add("details")

    # -- selection and pictures ---------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._dirty.add("details")
        self._show_details()
        self._dirty.discard("details")
        self._schedule_images()

    def _schedule_images(self) -> None:
        if not self._graphs_visible():
            return
        if self._image_timer is not None:
            self._image_timer.stop()
        self._image_timer = self.set_timer(0.15, self._load_images)

    def _load_images(self) -> None:
        row = self.state.picture_row(self.table.selected_id())
        if row is None or row["exposure_id"] == self._image_id:
            return
        self._image_id = str(row["exposure_id"])
        self._fetch_images(row)

    @work(thread=True, exclusive=True, group="images")
    def _fetch_images(self, row: dict[str, Any]) -> None:
        for message in load_thumbnails(self.source, row):
            self.post_message(message)

    def on_thumbnail_loaded(self, message: ThumbnailLoaded) -> None:
        if message.exposure_id == self._image_id:
            self.query_one("#images", ImagesPanel).show_loaded(message)

    # -- the running reconstructions ----------------------------------------------------------

    def _draw_reconstructions(self, *, plots: bool) -> None:
        """Redraw the reconstructions (``plots`` False: all but the plots); ask for the class
        set's pictures when they are not those of the latest class set."""
        state = self.state.reconstruction_state()
        version = None if state.class_set is None else int(state.class_set["version"])
        if version is not None and self._gallery[0] != version:
            self._gallery = (version, None, "")
            self._fetch_gallery(dict(state.class_set or {}))
        shown, tiles, error = self._gallery
        panel = self.query_one("#recon", ReconstructionPanel)
        note = "no picture" if error else "loading…"
        tiles = tiles if shown == version else None
        panel.draw(state, tiles, note=note, error=error, plots=plots)

    @work(thread=True, exclusive=True, group="gallery")
    def _fetch_gallery(self, class_set: dict[str, Any]) -> None:
        version = int(class_set["version"])
        try:
            tiles = load_class_gallery(self.source, class_set)
        except (CausalscopeError, OSError, ValueError, KeyError) as error:
            text = error.message if isinstance(error, CausalscopeError) else str(error)
            self.post_message(GalleryLoaded(version, None, text))
        else:
            self.post_message(GalleryLoaded(version, tiles))

    def on_gallery_loaded(self, message: GalleryLoaded) -> None:
        if message.version == self._gallery[0]:
            self._gallery = (message.version, message.tiles, message.error)
            self._dirty.add("classes")
            self._redraw()

    @on(ClassHighlighted)
    def _class_highlighted(self, message: ClassHighlighted) -> None:
        panel = self.query_one("#recon", ReconstructionPanel)
        panel.show_class(self.state.reconstruction_state())

    @on(ClassLabelRequested)
    def _class_label_requested(self, message: ClassLabelRequested) -> None:
        self._act("class_label", {"class_index": message.class_index, "label": message.label})

    def action_reconstructions(self) -> None:
        """Show the running reconstructions in the body's place, or go back from them."""
        if self._recon_visible():
            self._leave_reconstructions()
            return
        self.screen.add_class("-recon")
        self.query_one("#recon", ReconstructionPanel).gallery.focus()
        self._dirty |= {"recon", "overview"}
        self.call_after_refresh(self._redraw)

    def _leave_reconstructions(self) -> None:
        if self._recon_visible():
            self.screen.remove_class("-recon")
            self.table.focus()
            self._dirty.add("overview")

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _ACTIONS and len(self.screen_stack) > 1:
            return False
        return True

    @work(thread=True, group="actions")
    def _act(self, action: str, params: dict[str, Any]) -> None:
        try:
            reply = self.source.act(action, **params)
        except CausalscopeError as error:
            self.post_message(ActionFinished(action, params, None, error.message))
        else:
            self.post_message(ActionFinished(action, params, reply))

    def on_action_finished(self, message: ActionFinished) -> None:
        if message.reply is None:
            self.notify(message.error, title=f"{message.action} refused", severity="error")
            return
        params = message.params
        if message.action == "label":
            self._set_label(str(params["exposure_id"]), str(params["label"]))
            verb = "Accepted" if params["label"] == "accept" else "Rejected"
            self.notify(f"{verb} {params['exposure_id']}")
        elif message.action == "class_label":
            self.state.take_class_label(int(params["class_index"]), str(params["label"]))
            self._dirty |= {"classes", "overview"}
            verb = "Selected" if params["label"] == "select" else "Rejected"
            self.notify(f"{verb} class {int(params['class_index']) + 1} (the next update uses it)")
        elif message.action in ("pause", "resume"):
            self.state.status = {**(self.state.status or {}), "paused": message.action == "pause"}
            self._dirty.add("overview")
            self.notify("Paused" if message.action == "pause" else "Resumed")
        elif message.action == "set_threshold":
            self.state.thresholds[str(params["name"])] = float(params["value"])
            self._dirty.add("plots")
            self.notify(f"{params['name']} = {params['value']:g}")

    def action_label(self, label: str) -> None:
        """Accept or reject the selected exposure (or select or reject the class under the
        gallery's cursor, when the reconstructions are shown)."""
        if self._recon_visible():
            gallery = self.query_one("#recon", ReconstructionPanel).gallery
            gallery.action_label("select" if label == "accept" else "reject")
            return
        eid = self.table.selected_id()
        if eid is None:
            self.notify("No exposure selected", severity="warning")
            return
        self._act("label", {"exposure_id": eid, "label": label})

    def action_pause(self) -> None:
        """Pause processing, or resume it when paused."""
        paused = bool((self.state.status or {}).get("paused"))
        self._act("resume" if paused else "pause", {})

    def action_threshold(self) -> None:
        """Ask which threshold and its value, then set it."""

        def chosen(result: tuple[str, float] | None) -> None:
            if result is not None:
                self._act("set_threshold", {"name": result[0], "value": result[1]})

        self.push_screen(ThresholdDialog(self.state.thresholds), chosen)

    def action_filter(self) -> None:
        """Show and focus the filter box."""
        self._leave_reconstructions()
        if self._short():
            self.screen.remove_class("-causes")  # the box filters the table: show it
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = self.table.row_filter.text
        box.focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter(event.value)

    def action_clear_filter(self) -> None:
        """Drop the filter and hide its box."""
        if self.table.row_filter or self.query_one("#filter", Input).display:
            self._apply_filter("")

    def _apply_filter(self, text: str) -> None:
        self.query_one("#filter", Input).display = False  # the table's title shows the filter
        self.table.row_filter = RowFilter(text.strip())
        self._rebuild()
        self.table.focus()

    def action_sort(self) -> None:
        """Sort by the next key (worst first)."""
        self._leave_reconstructions()
        self.table.next_sort()
        self._rebuild()

    def _rebuild(self) -> None:
        table = self.table
        table.rebuild(self.state.rows.values(), self.state.labels.get, keep=table.selected_id())
        self._update_table_title()
        self._dirty |= {"overview", "details"}
        self._redraw()

    def action_graphs(self) -> None:
        """Switch between the table and the plots with pictures (or hide them when wide)."""
        if self._recon_visible():  # back, to the plots
            self._leave_reconstructions()
            self.screen.set_class(not self._wide(), "-graphs")
            self.call_after_refresh(self._graphs_toggled)
            return
        self.screen.toggle_class("-graphs")
        self.call_after_refresh(self._graphs_toggled)

    def action_causes(self) -> None:
        """Show the ranked causes (instead of the table when small), or go back from them."""
        screen = self.screen
        if self._recon_visible():  # back, to the causes
            self._leave_reconstructions()
            if not self._wide():
                screen.remove_class("-graphs")
            screen.set_class(self._short(), "-causes")
            self.call_after_refresh(self._graphs_toggled)
            return
        if self._causes_visible():
            # small: back to the table; large: hide the panel (the table gets its room)
            screen.set_class(not self._short(), "-causes")
        else:
            if not self.query_one("#left").display:
                screen.remove_class("-graphs")  # the graphs are in the causes' place
            screen.set_class(self._short(), "-causes")
        self.call_after_refresh(self._graphs_toggled)

    def _graphs_toggled(self) -> None:
        self._update_overview()  # its hint for the causes key
        if self._graphs_visible():
            self._dirty.add("plots")
            self._last_plot = 0.0
            self._image_id = None
            self._schedule_images()
            self._redraw()

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Leave the dashboard (the session goes on)."""
        self._stop.set()
        self.exit()

    def on_unmount(self) -> None:
        self._stop.set()
        gc.unfreeze()

    def on_resize(self) -> None:
        self.call_after_refresh(self._graphs_toggled)


def make_app(settings: Settings | TuiSettings, source: SessionSource) -> Dashboard:
    """The dashboard for ``source`` (the app factory the CLI and the tests use)."""
    if isinstance(settings, Settings):
        return Dashboard(settings.tui, source, alerts=settings.alerts)
    return Dashboard(settings, source)
