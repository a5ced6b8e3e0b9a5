"""Plots as inline SVG text: points over time, histograms, bars with error bars, lines.

No JavaScript and nothing fetched: each function returns one ``<svg>`` element that a browser
draws from the page itself. Values that are None or not finite are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["bars_with_errors", "histogram", "lines", "points_over_time"]

W, H = 460, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 26, 40
_STATUS_COLOURS = {"pass": "#2b8a3e", "warn": "#e67700", "fail": "#c92a2a"}
_LINE_COLOURS = ("#1c7ed6", "#e8590c", "#2b8a3e", "#862e9c")


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


class _Frame:
    """An axes box mapping data coordinates to the SVG's."""

    def __init__(self, x: tuple[float, float], y: tuple[float, float]) -> None:
        pad_x = (x[1] - x[0]) * 0.02 or 1.0
        pad_y = (y[1] - y[0]) * 0.05 or 1.0
        self.x0, self.x1 = x[0] - pad_x, x[1] + pad_x
        self.y0, self.y1 = y[0] - pad_y, y[1] + pad_y

    def px(self, x: float) -> float:
        return _LEFT + (x - self.x0) / (self.x1 - self.x0) * (W - _LEFT - _RIGHT)

    def py(self, y: float) -> float:
        return H - _BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (H - _TOP - _BOTTOM)

    def axes(self, title: str, x_label: str, y_label: str) -> list[str]:
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="{escape(title)}" class="plot">',
            f'<text x="{W / 2}" y="16" class="title">{escape(title)}</text>',
            f'<rect x="{_LEFT}" y="{_TOP}" width="{W - _LEFT - _RIGHT}" '
            f'height="{H - _TOP - _BOTTOM}" class="frame"/>',
        ]
        for t in _ticks(self.x0, self.x1):
            x = self.px(t)
            out.append(f'<text x="{x:.1f}" y="{H - _BOTTOM + 14}" class="tick">{_fmt(t)}</text>')
        for t in _ticks(self.y0, self.y1):
            y = self.py(t)
            out.append(
                f'<line x1="{_LEFT}" x2="{W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            )
            out.append(f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" class="ytick">{_fmt(t)}</text>')
        out.append(f'<text x="{W / 2}" y="{H - 6}" class="label">{escape(x_label)}</text>')
        out.append(
            f'<text x="12" y="{H / 2}" class="label" transform="rotate(-90 12 {H / 2})">'
            f"{escape(y_label)}</text>"
        )
        return out


def _empty(title: str, why: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="plot">'
        f'<text x="{W / 2}" y="16" class="title">{escape(title)}</text>'
        f'<text x="{W / 2}" y="{H / 2}" class="label">{escape(why)}</text></svg>'
    )


def points_over_time(
    hours: Sequence[float | None],
    values: Sequence[float | None],
    status: Sequence[str | None],
    *,
    title: str,
    y_label: str,
) -> str:
    """One point per exposure at its commit time, coloured by the gate's verdict, with the
    running median of the last 25 exposures as a line."""
    pairs = [
        (float(h), float(v), s or "pass")
        for h, v, s in zip(hours, values, status, strict=True)
        if h is not None and v is not None and math.isfinite(float(v))
    ]
    if not pairs:
        return _empty(title, "no values")
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    frame = _Frame((min(xs), max(xs)), (min(ys), max(ys)))
    out = frame.axes(title, "hours since the first exposure", y_label)
    for name, colour in _STATUS_COLOURS.items():
        dots = "".join(
            f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="2"/>'
            for x, y, s in pairs
            if s == name
        )
        if dots:
            out.append(f'<g fill="{colour}" fill-opacity="0.7" class="points-{name}">{dots}</g>')
    window = 25
    median = []
    for i in range(len(ys)):
        recent = sorted(ys[max(0, i - window + 1) : i + 1])
        median.append(recent[len(recent) // 2])
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{frame.px(x):.1f},{frame.py(m):.1f}"
        for i, (x, m) in enumerate(zip(xs, median, strict=True))
    )
    out.append(f'<path d="{path}" class="median"/>')
    out.append("</svg>")
    return "".join(out)


def histogram(values: Sequence[float | None], *, title: str, x_label: str, bins: int = 30) -> str:
    """Counts of ``values`` in ``bins`` equal bins between their extremes."""
    data = _finite(values)
    if not data:
        return _empty(title, "no values")
    low, high = min(data), max(data)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for v in data:
        counts[min(int((v - low) / width), bins - 1)] += 1
    frame = _Frame((low, low + bins * width), (0.0, float(max(counts))))
    frame.y0 = 0.0
    out = frame.axes(title, x_label, "exposures")
    base = frame.py(0.0)
    for i, c in enumerate(counts):
        if not c:
            continue
        x0, x1 = frame.px(low + i * width), frame.px(low + (i + 1) * width)
        y = frame.py(float(c))
        out.append(
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
            f'height="{base - y:.1f}" class="bar"/>'
        )
    out.append("</svg>")
    return "".join(out)


def bars_with_errors(
    names: Sequence[str], means: Sequence[float], sds: Sequence[float], *, title: str, x_label: str
) -> str:
    """One horizontal bar per name (its mean) with a +- 1 sd error bar, first at the top."""
    if not names:
        return _empty(title, "no causes")
    row = 24
    height = _TOP + row * len(names) + _BOTTOM
    left = 150
    high = max(m + s for m, s in zip(means, sds, strict=True))
    high = high if high > 0 else 1.0
    span = W - left - _RIGHT

    def px(v: float) -> float:
        return left + max(v, 0.0) / high * span

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" role="img" '
        f'aria-label="{escape(title)}" class="plot">',
        f'<text x="{W / 2}" y="16" class="title">{escape(title)}</text>',
    ]
    for i, (name, mean, sd) in enumerate(zip(names, means, sds, strict=True)):
        y = _TOP + i * row
        out.append(f'<text x="{left - 6}" y="{y + 16}" class="ytick">{escape(name)}</text>')
        out.append(
            f'<rect x="{left}" y="{y + 5}" width="{px(mean) - left:.1f}" height="14" class="bar"/>'
        )
        lo, hi = px(mean - sd), px(mean + sd)
        out.append(
            f'<path d="M{lo:.1f},{y + 12}H{hi:.1f}M{lo:.1f},{y + 7}V{y + 17}M{hi:.1f},{y + 7}'
            f'V{y + 17}" class="error"/>'
        )
    axis_y = _TOP + row * len(names) + 4
    for t in _ticks(0.0, high):
        out.append(f'<text x="{px(t):.1f}" y="{axis_y + 12}" class="tick">{_fmt(t)}</text>')
    out.append(f'<text x="{W / 2}" y="{height - 6}" class="label">{escape(x_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def lines(
    series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    threshold: float | None = None,
) -> str:
    """Lines ``(label, xs, ys)`` with a legend, and a dashed horizontal ``threshold``."""
    points = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=True) if y is not None]
    if not points:
        return _empty(title, "no values")
    ys_all = [p[1] for p in points] + ([threshold] if threshold is not None else [])
    frame = _Frame(
        (min(p[0] for p in points), max(p[0] for p in points)), (min(ys_all), max(ys_all))
    )
    out = frame.axes(title, x_label, y_label)
    if threshold is not None:
        y = frame.py(threshold)
        out.append(
            f'<line x1="{_LEFT}" x2="{W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="threshold"/>'
        )
    for k, (label, xs, ys) in enumerate(series):
        colour = _LINE_COLOURS[k % len(_LINE_COLOURS)]
        kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{frame.px(x):.1f},{frame.py(y):.1f}"
            for i, (x, y) in enumerate(kept)
        )
        marks = "".join(
            f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="2.5"/>' for x, y in kept
        )
        out.append(
            f'<path d="{path}" stroke="{colour}" class="line"/><g fill="{colour}">{marks}</g>'
        )
        out.append(
            f'<text x="{W - _RIGHT - 4}" y="{_TOP + 14 + 14 * k}" fill="{colour}" '
            f'class="legend">{escape(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
