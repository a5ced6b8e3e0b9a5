"""Text for the causal model: the ranked causes with error bars, a headline, an exposure's shares.

The daemon's causal model decides every number (shares, ranks, P(top), convergence, advice);
these functions only draw them. Rows are the published shapes: a ranking entry as in
``CausalUpdate.to_dict()["ranking"]`` (or a ``causal_ranking`` row), an exposure's verdict as
the rest of that dictionary (or a ``causal`` row with its ``shares``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from causalscope.tui.format import short_id

__all__ = [
    "CAUSE_NAMES",
    "CausesState",
    "cause_name",
    "causes_body",
    "causes_headline",
    "causes_title",
    "exposure_causes_text",
]

Row = Mapping[str, Any]

#: The model's cause names in operators' words.
CAUSE_NAMES: dict[str, str] = {
    "ice_thickness": "ice thickness",
    "dose": "dose",
    "drift": "drift",
    "defocus": "defocus",
    "astigmatism": "astigmatism",
    "beam_tilt": "beam tilt",
    "particle_density": "particle density",
}

_NAME_WIDTH = 16  # "particle density"
# rank, name, bar, "0.62 ± 0.05 Å", P(top), marker: every column but the bar's
_FIXED_WIDTH = 3 + _NAME_WIDTH + 1 + 1 + 14 + 2 + 6 + 2
_MIN_BAR = 6
_TITLE = "Causes of lost resolution"


def cause_name(cause: str | None) -> str:
    """``ice_thickness`` -> ``ice thickness`` (unknown names: underscores to spaces)."""
    if not cause:
        return "-"
    return CAUSE_NAMES.get(cause, cause.replace("_", " "))


def _float(row: Row, key: str) -> float:
    got = row.get(key)
    return float(got) if isinstance(got, int | float) and math.isfinite(got) else 0.0


@dataclass(frozen=True)
class CausesState:
    """What the causes panel shows.

    Attributes
    ----------
    ranking
        The latest ranking, best first (rank 1 costs the most); None: the session has no
        causal model (a file written before it), empty: no update yet.
    exposures
        Exposures the model had seen at its latest update (None: no update yet).
    converged
        Whether every observed cause's weight had converged at the latest update.
    regime
        Regime changes declared so far.
    regime_changed_at
        The exposure at which the latest regime change was declared, when known.
    """

    ranking: Sequence[Row] | None
    exposures: int | None = None
    converged: bool = False
    regime: int = 0
    regime_changed_at: str | None = None

    def observed(self) -> list[Row]:
        """Ranked causes that varied in the session (the only ones the model can judge)."""
        return [r for r in self.ranking or () if r.get("observed")]

    def unobserved(self) -> list[Row]:
        """Causes that did not vary (nothing can be learned about them)."""
        return [r for r in self.ranking or () if not r.get("observed")]


def causes_title(state: CausesState) -> str:
    """The panel's title: what it shows, from how many exposures, converged or learning."""
    if state.ranking is None:
        return _TITLE
    if state.exposures is None:
        return f"{_TITLE} · learning"
    verdict = "converged" if state.converged else "learning"
    return f"{_TITLE} · {state.exposures} exposures · {verdict}"


def _nice(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= ``x`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(x))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= x * (1 - 1e-9):
            return step * power
    return 10.0 * power


def _scale(rows: Sequence[Row]) -> float:
    """The common axis, Angstrom: room for every cause's mean + sd."""
    top = max((_float(r, "mean_angstrom") + _float(r, "sd_angstrom") for r in rows), default=0.0)
    return _nice(max(top, 0.05))


def _bar(mean: float, sd: float, scale: float, width: int) -> str:
    """``█████├─●─┤``: the solid bar runs to mean - sd, ``├ ┤`` are mean -/+ sd, ``●`` the mean.

    Values are placed on ``width`` cells from 0 to ``scale`` (negative ones at 0).
    """

    def cell(x: float) -> int:
        return min(width - 1, max(0, int(x / scale * width)))

    lo, mid, hi = cell(mean - sd), cell(mean), cell(mean + sd)
    chars = [" "] * width
    for i in range(lo):
        chars[i] = "█"
    if hi > lo:
        chars[lo], chars[hi] = "├", "┤"
        for i in range(lo + 1, hi):
            chars[i] = "─"
    chars[mid] = "●"
    return "".join(chars)


def _regime_notice(state: CausesState) -> Text | None:
    if state.regime <= 0:
        return None
    text = Text("⚠ ", style="bold yellow")
    text.append("Regime change", style="bold yellow")
    if state.regime_changed_at:
        text.append(f" at {short_id(state.regime_changed_at, 24)}")
    if state.regime > 1:
        text.append(f" ({state.regime} so far)")
    text.append(": ranked from the exposures since", style="yellow")
    return text


def causes_body(state: CausesState, width: int) -> Text:
    """The ranked causes, one line each, on a common scale; then what to do about the first.

    ``width`` is the width to fill (the bars take what the other columns leave).
    """
    if state.ranking is None:
        return Text("no causal model (this session was recorded without one)", style="dim italic")
    observed = state.observed()
    text = Text()
    notice = _regime_notice(state)
    if notice is not None:
        text.append_text(notice)
        text.append("\n")
    if not observed:
        text.append(
            "learning: no cause has varied yet (the model learns from each exposure with a "
            "CTF fit and ice thickness)",
            style="dim italic",
        )
        return text
    bar_width = max(_MIN_BAR, width - _FIXED_WIDTH)
    scale = _scale(observed)
    axis_end = f"{scale:g} Å"
    text.append(f"{'':3}{'cause':<{_NAME_WIDTH}} ", style="dim")
    text.append(f"0{axis_end:>{bar_width - 1}} ", style="dim")
    text.append(f"{'mean ± sd':>14}  P(top)", style="dim")
    for position, row in enumerate(observed):
        mean, sd = _float(row, "mean_angstrom"), _float(row, "sd_angstrom")
        settled = bool(row.get("converged"))
        top = position == 0
        text.append("\n")
        rank = row.get("rank", position + 1)
        text.append(f"{rank:>2} ", style="bold" if top else "dim")
        name = cause_name(str(row.get("cause")))[:_NAME_WIDTH]
        text.append(f"{name:<{_NAME_WIDTH}} ", style="bold" if top else "")
        bar_style = "bold red" if top else "cyan"
        text.append(_bar(mean, sd, scale, bar_width), style=bar_style if settled else "dim")
        text.append(f" {mean:>5.2f} ± {sd:4.2f} Å", style="" if settled else "dim")
        text.append(f"  {_float(row, 'p_top'):6.2f}", style="bold" if top else "")
        if not settled:
            text.append(" ?", style="bold yellow")
    unobserved = state.unobserved()
    if unobserved:
        names = ", ".join(cause_name(str(r.get("cause"))) for r in unobserved)
        text.append(f"\n{'':3}not observed (did not vary): {names}", style="dim")
    advice = observed[0].get("advice")
    if advice:
        text.append("\n→ ", style="bold cyan")
        text.append(str(advice), style="italic")
    return text


def causes_headline(state: CausesState, *, hint: bool) -> Text | None:
    """One line for the overview: the top cause, its cost and P(top); None before there is one.

    ``hint``: say which key shows every cause (when the panel is not on screen).
    """
    observed = state.observed()
    if not observed:
        return None
    top = observed[0]
    text = Text()
    text.append("top cause ", style="dim")
    text.append(cause_name(str(top.get("cause"))), style="bold")
    mean, sd = _float(top, "mean_angstrom"), _float(top, "sd_angstrom")
    text.append(f" {mean:.2f} ± {sd:.2f} Å")
    text.append(" P(top) ", style="dim")
    text.append(f"{_float(top, 'p_top'):.2f}")
    if not top.get("converged"):
        text.append(" ?", style="bold yellow")
    if state.regime > 0:
        text.append(" · ")
        text.append("⚠ regime change", style="bold yellow")
    else:
        text.append(" · ", style="dim")
        text.append(*(("converged", "green") if state.converged else ("learning", "yellow")))
    if hint:
        text.append("  c: all causes", style="dim")
    return text


def exposure_causes_text(causal: Row | None) -> Text | None:
    """An exposure's dominant cause and every cause's share of the resolution it lost against
    the session's best (shares and the unexplained rest add up to the loss).

    None when the model has not judged the exposure.
    """
    if causal is None:
        return None
    text = Text()
    observed = _float(causal, "observed_resolution_angstrom")
    best = _float(causal, "best_resolution_angstrom")
    dominant = causal.get("dominant_cause")
    text.append("cause ", style="dim")
    if dominant:
        text.append(cause_name(str(dominant)), style="bold magenta")
    else:
        text.append("none: as good as the session's best", style="green")
    text.append(" · lost ", style="dim")
    text.append(f"{observed - best:.2f} Å")
    shares = [
        s
        for s in causal.get("shares") or []
        if isinstance(s, Mapping) and abs(_float(s, "share_angstrom")) >= 0.005
    ]
    shares.sort(key=lambda s: -_float(s, "share_angstrom"))
    # one per line: a narrow pane wraps a long line between a number and its unit
    for share in shares:
        name = cause_name(str(share.get("cause")))
        text.append(f"\n  {name:<{_NAME_WIDTH}}")
        text.append(
            f"{_float(share, 'share_angstrom'):5.2f} ± {_float(share, 'sd_angstrom'):.2f} Å",
            style="bold" if share.get("cause") == dominant else "",
        )
    text.append(f"\n  {'unexplained':<{_NAME_WIDTH}}", style="dim")
    text.append(f"{_float(causal, 'unexplained_angstrom'):5.2f} Å", style="dim")
    text.append(f"\n  fit {observed:.2f} Å, the session's best {best:.2f} Å", style="dim")
    return text
