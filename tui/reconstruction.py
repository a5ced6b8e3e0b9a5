"""Text for the running reconstructions: the verdict, the overview's headline, each class's lines.

The daemon's evaluator decides every number (resolutions, the automatic selection, the
forecast); these functions only draw them. Rows are the published shapes
(:class:`~causalscope.daemon.client.wire.EvaluationUpdate` and its parts): an update as published
on ``evaluation`` (or a row of the view ``evaluation_updates``), a class as one of its class
set's ``classes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

__all__ = [
    "KEEPING_UP_BACKLOG",
    "ReconstructionState",
    "about",
    "class_info_text",
    "class_subtitle",
    "class_title",
    "classes_title",
    "count",
    "fsc_frequencies",
    "labels_note",
    "reconstruction_headline",
    "verdict_text",
]

Row = Mapping[str, Any]

#: Exposures waiting for the evaluator that still count as keeping up (one being read, one
#: queued behind it).
KEEPING_UP_BACKLOG = 2
_LABEL_MARK = {"select": ("✓", "bold green"), "reject": ("✗", "bold red")}


def _number(row: Row | None, key: str) -> float | None:
    got = None if row is None else row.get(key)
    if isinstance(got, bool) or not isinstance(got, int | float) or not math.isfinite(got):
        return None
    return float(got)


def count(n: float | None) -> str:
    """``12,300``; ``-`` for None."""
    return "-" if n is None else f"{n:,.0f}"


def about(n: float) -> str:
    """``n`` to two significant figures: ``57,850`` -> ``58,000``; ``840`` -> ``840``."""
    if n < 100:
        return f"{n:,.0f}"
    return f"{round(n, 1 - math.floor(math.log10(n))):,.0f}"


def _short_count(n: float) -> str:
    """``987``, ``1.2k``, ``12k``, ``1.3M``: a count in at most four characters."""
    for limit, unit in ((1e6, "M"), (1e3, "k")):
        if n >= limit:
            scaled = n / limit
            return f"{scaled:.1f}{unit}" if scaled < 9.95 else f"{scaled:.0f}{unit}"
    return f"{n:.0f}"


def _hours(hours: float) -> str:
    if hours < 1:
        return f"~{max(1, round(60 * hours))} min"
    return f"~{hours:.1f} h" if hours < 10 else f"~{hours:.0f} h"


def _angstrom(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} Å"


@dataclass(frozen=True)
class ReconstructionState:
    """What the reconstructions panel and the overview's headline show.

    Attributes
    ----------
    updates
        The evaluator's updates, oldest first (published shape; the history's lack the class
        lists and the FSC curves).
    class_set
        The latest class set with its ``classes`` and its update's ``version``, or None.
    reconstruction
        The latest map with its FSC curves and its update's ``version``, or None.
    class_labels
        The operator's latest label per class index (newer than the class set's own labels
        until the next update applies them).
    status
        The session status's ``reconstruction`` (version, particles, backlog, update_every),
        or None (a finished session, or one without running reconstructions).
    """

    updates: Sequence[Row] = ()
    class_set: Row | None = None
    reconstruction: Row | None = None
    class_labels: Mapping[int, str] = field(default_factory=dict)
    status: Row | None = None

    @property
    def active(self) -> bool:
        """Whether the session has running reconstructions (updates, or an evaluator)."""
        return bool(self.updates) or self.status is not None

    def latest(self) -> Row | None:
        """The latest update, or None."""
        return self.updates[-1] if self.updates else None

    def latest_with(self, part: str) -> Row | None:
        """The latest update that has ``part`` (``map``, ``forecast``, ``class_set``)."""
        return next((u for u in reversed(self.updates) if isinstance(u.get(part), Mapping)), None)

    def classes(self) -> list[Row]:
        """The latest class set's classes, in class order (empty without one)."""
        got = (self.class_set or {}).get("classes")
        return [c for c in got if isinstance(c, Mapping)] if isinstance(got, list) else []

    def label(self, row: Row) -> str | None:
        """A class's label now: the operator's latest, else the one its update applied."""
        index = int(row.get("class_index", -1))
        got = self.class_labels.get(index, row.get("label"))
        return str(got) if got in ("select", "reject") else None

    def selected(self, row: Row) -> bool:
        """Whether a class is selected now: the operator's label, else the evaluator's choice."""
        label = self.label(row)
        if label is not None:
            return label == "select"
        return bool(row.get("selected"))

    def pending(self, row: Row) -> bool:
        """Whether the operator labelled a class since its update (the next one applies it)."""
        return self.label(row) != row.get("label")

    def selected_count(self) -> tuple[int, int]:
        """(selected, all) classes now."""
        classes = self.classes()
        return sum(self.selected(c) for c in classes), len(classes)

    def map_points(self) -> list[tuple[float, float]]:
        """(particles, resolution Å) of each update whose map reached a resolution."""
        points = []
        for update in self.updates:
            volume = update.get("map")
            resolution = _number(volume, "resolution_angstrom")
            particles = _number(volume, "particles")
            if resolution is not None and particles:
                points.append((particles, resolution))
        return points

    def forecast_points(self) -> list[tuple[float, float]]:
        """The latest forecast as (particles, resolution Å) points, fewest particles first:
        the map now, at twice its particles, and the target where it is forecast."""
        update = self.latest_with("forecast")
        if update is None:
            return []
        forecast = update["forecast"]
        n = _number(forecast, "particles")
        points = []
        now = _number(update.get("map"), "resolution_angstrom")
        if n and now is not None:
            points.append((n, now))
        double = _number(forecast, "resolution_at_double_angstrom")
        if n and double is not None:
            points.append((2 * n, double))
        needed = _number(forecast, "particles_needed")
        target = _number(forecast, "target_resolution_angstrom")
        if needed and target is not None:
            points.append((needed, target))
        return sorted(points)


def fsc_frequencies(n_shells: int, pixel_size_angstrom: float) -> list[float]:
    """The spatial frequency (1/Å) of each FSC shell: shell ``i`` at ``i / (2 (n - 1))``
    cycles per pixel."""
    if n_shells < 2:
        return [0.0] * n_shells
    return [i / (2 * (n_shells - 1)) / pixel_size_angstrom for i in range(n_shells)]


def _bfactor(forecast: Row) -> str | None:
    fitted = _number(forecast, "bfactor_angstrom2")
    sd = _number(forecast, "bfactor_sd_angstrom2")
    if fitted is not None:
        return f"B {fitted:.0f}" + (f" ± {sd:.0f}" if sd is not None else "") + " Å²"
    from_fsc = _number(forecast, "ssnr_bfactor_angstrom2")
    return None if from_fsc is None else f"B ≈ {from_fsc:.0f} Å² (from the FSC)"


def _forecast_words(forecast: Row, particles: float, resolution: float | None) -> str:
    """``3.0 Å forecast at ~58,000 (~3.0 h at current rate)``, or why there is none."""
    target = _number(forecast, "target_resolution_angstrom")
    needed = _number(forecast, "particles_needed")
    if target is None:
        return "no forecast"
    if resolution is not None and resolution <= target:
        return f"target {target:.1f} Å reached"
    if needed is None:
        return f"{target:.1f} Å not forecast (the FSC gives no B-factor yet)"
    words = f"{target:.1f} Å forecast at ~{about(needed)}"
    hours = _number(forecast, "hours_to_target")
    if hours is not None:
        words += f" ({_hours(hours)} at current rate)"
    elif needed > particles:
        words += " (rate not known yet)"
    return words


def _map_words(state: ReconstructionState, *, short: bool = False) -> tuple[Text, list[Text]]:
    """The map's verdict (``4.1 Å from 12,300 particles; 3.0 Å forecast at ~58,000 (~3.0 h at
    current rate)``; ``short``: without "at current rate") and what may follow it where there
    is room."""
    text = Text()
    extras: list[Text] = []
    update = state.latest_with("map")
    if update is None:
        text.append("3D map: ", style="bold")
        text.append("none yet", style="dim")
        if state.class_set is not None:
            selected, total = state.selected_count()
            extras.append(Text(f"2D: {selected}/{total} classes selected"))
        return text, extras
    volume = update["map"]
    particles = _number(volume, "particles") or 0.0
    resolution = _number(volume, "resolution_angstrom")
    if resolution is None:
        text.append("FSC not at 0.143 yet", style="bold yellow")
    else:
        text.append(f"{resolution:.1f} Å", style="bold green")
    text.append(f" from {count(particles)} particles")
    forecast = update.get("forecast")
    if isinstance(forecast, Mapping):
        text.append("; ")
        words = _forecast_words(forecast, particles, resolution)
        text.append(words.replace(" at current rate", "") if short else words, style="bold")
        bfactor = _bfactor(forecast)
        if bfactor is not None:
            extras.append(Text(bfactor))
        end, chance = (
            _number(forecast, k) for k in ("resolution_at_end_angstrom", "p_reach_target")
        )
        if end is not None and chance is not None:  # a planned session: what its end gives
            target = _number(forecast, "target_resolution_angstrom") or 0.0
            style = "green" if chance >= 0.8 else "yellow" if chance >= 0.3 else "red"
            extras.insert(
                0, Text(f"by the end ~{end:.1f} Å, P({target:.1f} Å) {chance:.0%}", style)
            )
        double = _number(forecast, "resolution_at_double_angstrom")
        if double is not None:
            extras.append(Text(f"{double:.1f} Å at 2× particles"))
    return text, extras


def verdict_text(state: ReconstructionState, width: int = 1_000) -> Text:
    """The panel's one line: the map and its forecast, then what fits of the B-factor, the
    resolution at twice the particles and whether the evaluator keeps up."""
    if not state.active:
        return Text("No running reconstructions in this session", style="dim")
    text, extras = _map_words(state)
    if text.cell_len > width:
        text, extras = _map_words(state, short=True)
    evaluator = _evaluator(state.status)
    for extra in [*extras, *([] if evaluator is None else [evaluator])]:
        if text.cell_len + 3 + extra.cell_len <= width:
            text.append(" · ", style="dim")
            text.append_text(extra)
    return text


def classes_title(state: ReconstructionState) -> str:
    """The gallery's title: ``2D classes 7/12 selected · 10,250 of 12,300 particles · update
    5``."""
    if state.class_set is None:
        return "2D classes"
    selected, total = state.selected_count()
    kept = count(_number(state.class_set, "selected_particles"))
    everyone = count(_number(state.class_set, "particles"))
    version = state.class_set.get("version")
    return (
        f"2D classes {selected}/{total} selected · {kept} of {everyone} particles · "
        f"update {version}"
    )


def labels_note(state: ReconstructionState) -> str:
    """What the gallery's foot says of the operator's labels the next update will apply."""
    waiting = sum(state.pending(c) for c in state.classes())
    if not waiting:
        return ""
    return f"{waiting} label{'s' if waiting > 1 else ''} of yours: the next update applies"


def _evaluator(status: Row | None) -> Text | None:
    """Whether the evaluator keeps up with the exposures handed to it."""
    if status is None:
        return None
    backlog = int(_number(status, "backlog") or 0)
    if backlog <= KEEPING_UP_BACKLOG:
        return Text("evaluator keeping up", style="green")
    return Text(f"evaluator {backlog} exposures behind", style="bold yellow")


def reconstruction_headline(state: ReconstructionState, *, hint: bool) -> Text | None:
    """The overview's line (``map 4.1 Å from 12,300 · 7/12 classes · evaluator keeping up``);
    None when the session has no running reconstructions. ``hint`` adds the key that shows
    them."""
    if not state.active:
        return None
    text = Text()
    update = state.latest_with("map")
    if update is not None:
        text.append("map ", style="dim")
        text.append(_angstrom(_number(update["map"], "resolution_angstrom")), style="bold")
        text.append(f" from {count(_number(update['map'], 'particles'))}")
    if state.class_set is not None:
        selected, total = state.selected_count()
        if update is None:
            text.append("2D ", style="dim")
            text.append(f"{selected}/{total} classes", style="bold")
            text.append(f" · {count(_number(state.class_set, 'particles'))} particles")
        else:
            text.append(f" · {selected}/{total} classes")
    if not text:
        text.append("reconstructions ", style="dim")
        text.append("no map or classes yet")
    evaluator = _evaluator(state.status)
    if evaluator is not None:
        text.append(" · ")
        text.append_text(evaluator)
    if hint:
        text.append("  m: classes & map", style="dim")
    return text


def class_title(state: ReconstructionState, row: Row) -> Text:
    """A tile's title: the class number (from 1, as RELION counts) and the operator's mark."""
    text = Text(f"{int(row.get('class_index', 0)) + 1}", style="bold")
    label = state.label(row)
    if label is not None:
        mark, style = _LABEL_MARK[label]
        text.append(f" {mark}", style=style)
    return text


def class_subtitle(row: Row) -> str:
    """A tile's subtitle: particles and resolution (``1.2k 7.9Å``)."""
    particles = _number(row, "particles") or 0.0
    resolution = _number(row, "resolution_angstrom")
    shown = "-" if resolution is None else f"{resolution:.0f}Å"
    return f"{_short_count(particles)} {shown}"


def class_info_text(state: ReconstructionState, row: Row | None, width: int = 1_000) -> Text:
    """The class under the cursor in words: ``class 1 · 2,100 particles (ESS 1,680) · 8.5 Å ·
    junk 0.10 · SELECTED (auto)``; the effective sample size, then the junk score, left out
    where ``width`` is short."""
    if row is None:
        return Text("no classes yet", style="dim")
    ess = _number(row, "effective_sample_size")
    junk = _number(row, "junk_score")
    for with_ess, with_junk in ((True, True), (False, True), (False, False)):
        text = Text()
        text.append(f"class {int(row.get('class_index', 0)) + 1}", style="bold")
        text.append(f" · {count(_number(row, 'particles'))} particles")
        if ess is not None and with_ess:
            text.append(f" (ESS {count(ess)})", style="dim")
        text.append(f" · {_angstrom(_number(row, 'resolution_angstrom'))}")
        if junk is not None and with_junk:
            text.append(f" · junk {junk:.2f}", style="dim")
        text.append(" · ")
        selected = state.selected(row)
        style = "bold green" if selected else "bold red"
        text.append("SELECTED" if selected else "REJECTED", style=style)
        if state.label(row) is None:
            text.append(" (auto)", style="dim")
        else:
            text.append(" by you" + (" (next update)" if state.pending(row) else ""))
        if text.cell_len <= width:
            break
    return _with_recommendation(text, row, width)


_RECOMMENDATION_STYLE = {"accept": "bold green", "look": "bold yellow", "reject": "bold red"}


def _with_recommendation(text: Text, row: Row, width: int) -> Text:
    """The daemon's recommendation for the class (``· look: its reason``), with the Novelty
    where there is room; the reason is cut to the width."""
    recommendation = row.get("recommendation")
    if recommendation not in _RECOMMENDATION_STYLE:
        return text
    novelty = _number(row, "novelty")
    head = Text(" · ")
    head.append(str(recommendation), style=_RECOMMENDATION_STYLE[str(recommendation)])
    if novelty is not None:
        head.append(f" (novelty {novelty:.2f})", style="dim")
    if text.cell_len + head.cell_len > width:
        return text
    text.append_text(head)
    reason = str(row.get("reason") or "")
    room = width - text.cell_len - 2
    if reason and room >= 12:
        text.append(": " + (reason if len(reason) <= room else reason[: room - 1] + "…"))
    return text
