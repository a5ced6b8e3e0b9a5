"""Live plots of the per-exposure measures, with the threshold lines (plotext in Textual)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from textual.app import ComposeResult, RenderResult
from textual.containers import Grid
from textual_plotext import PlotextPlot

from causalscope.tui.format import defocus_um, value

__all__ = ["SERIES", "MetricPlot", "PlotsPanel", "Series", "downsample"]

Row = Mapping[str, Any]


def _particles(row: Row) -> float | None:
    for holder in (row, row.get("picking"), row.get("particles")):
        if isinstance(holder, Mapping):
            got = holder.get("n_particles")
            if isinstance(got, int | float) and not isinstance(got, bool):
                return float(got)
    return None


@dataclass(frozen=True)
class Series:
    """One plotted measure: its key, title, how to read it, and its threshold's name."""

    key: str
    title: str
    read: Callable[[Row], float | None]
    threshold: str | None = None


SERIES: tuple[Series, ...] = (
    Series("defocus", "defocus µm", defocus_um),
    Series(
        "resolution",
        "CTF fit res Å",
        lambda r: value(r, "ctf", "fit_resolution_angstrom"),
        "ctf_fit_resolution_angstrom",
    ),
    Series(
        "drift", "total drift px", lambda r: value(r, "motion", "total_drift_px"), "total_drift_px"
    ),
    Series("ice", "ice nm", lambda r: value(r, "ctf", "ice_thickness_nm"), "ice_thickness_nm"),
    Series("particles", "particles", _particles),
)


def downsample(values: Sequence[float | None], n_max: int) -> tuple[list[float], list[float]]:
    """``(x, y)`` with at most ``n_max`` points: means of equal runs of exposures (1-based x);
    missing values are skipped."""
    n = len(values)
    if n == 0:
        return [], []
    step = max(1, math.ceil(n / max(1, n_max)))
    data = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    pad = (-n) % step
    blocks = np.concatenate([data, np.full(pad, np.nan)]).reshape(-1, step)
    counts = np.sum(~np.isnan(blocks), axis=1)
    sums = np.nansum(blocks, axis=1)
    starts = np.arange(0, n, step)
    centres = starts + 1 + (np.minimum(step, n - starts) - 1) / 2
    keep = counts > 0
    return centres[keep].tolist(), (sums[keep] / counts[keep]).tolist()


class MetricPlot(PlotextPlot):
    """One measure over the exposures, its threshold a horizontal line."""

    def __init__(self, series: Series, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="metric-plot")
        self.series = series
        self._values: list[float | None] = []
        self._threshold: float | None = None

    def set_data(self, values: list[float | None], threshold: float | None) -> None:
        """New values (one per exposure, in order seen) and threshold; redraws."""
        self._values = values
        self._threshold = threshold
        self.set_class(all(v is None for v in values), "-empty")
        self.refresh()

    def render(self) -> RenderResult:
        plt = self.plt
        plt.clear_figure()
        xs, ys = downsample(self._values, max(8, 2 * self.size.width))
        last = next((v for v in reversed(self._values) if v is not None), None)
        title = self.series.title + ("" if last is None else f"  last {last:.3g}")
        if self._threshold is not None:
            title += f"  limit {self._threshold:g}"
        plt.title(title)
        if ys:
            plt.plot(xs, ys, marker="braille", color="cyan")
        else:
            plt.text("no data yet", x=0.5, y=0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        if self._threshold is not None and ys:
            plt.hline(self._threshold, color="red")
        plt.xfrequency(3)
        plt.yfrequency(3)
        return super().render()


class PlotsPanel(Grid, can_focus=False):
    """A grid of :class:`MetricPlot`, one per series plus one per score that appears."""

    def compose(self) -> ComposeResult:
        for series in SERIES:
            yield MetricPlot(series, id=f"plot-{series.key}")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        # exposure id -> (the row object read, its values per series): rows are read once
        self._read: dict[str, tuple[Row, dict[str, float | None]]] = {}

    def _values(self, row: Row, plots: Sequence[MetricPlot]) -> dict[str, float | None]:
        eid = str(row.get("exposure_id"))
        cached = self._read.get(eid)
        if cached is not None and cached[0] is row and len(cached[1]) == len(plots):
            return cached[1]
        values = {plot.series.key: plot.series.read(row) for plot in plots}
        self._read[eid] = (row, values)
        return values

    def update_plots(self, rows: Sequence[Row], thresholds: Mapping[str, float]) -> None:
        """Redraw every plot from all rows (done exposures, in order seen)."""
        known = {plot.series.key for plot in self.query(MetricPlot)}
        scores = {k for r in rows if r.get("scores") for k in r["scores"]}
        for name in sorted(scores - known):
            # scores published by later stages, plotted as they appear
            series = Series(name, name, functools.partial(_score, name=name))
            self.mount(MetricPlot(series, id=f"plot-{name}"))
        plots = list(self.query(MetricPlot))
        table = [self._values(r, plots) for r in rows]
        for plot in plots:
            series = plot.series
            limit = thresholds.get(series.threshold) if series.threshold else None
            plot.set_data([values.get(series.key) for values in table], limit)


def _score(row: Row, *, name: str) -> float | None:
    scores = row.get("scores")
    got = scores.get(name) if isinstance(scores, Mapping) else None
    return float(got) if isinstance(got, int | float) and not isinstance(got, bool) else None
