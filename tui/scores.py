"""Text for an exposure's score in the details pane (no decisions: the daemon scored it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text

__all__ = ["score_text"]

# the components of V as the operator reads them
_NAMES = {
    "logic": "consistency",
    "novelty": "novelty",
    "impact": "impact",
    "delta_repro": "reproducibility",
    "meta": "stability",
}


def score_text(score: Mapping[str, Any] | None) -> Text | None:
    """``HyperScore 112.4 (V 0.71), held down most by impact``, what its particles are
    expected to add to the map, and each failed obligation with the values that break it;
    None when the exposure is not scored."""
    if not score or not isinstance(score.get("hyperscore"), int | float):
        return None
    text = Text()
    hyper, v = float(score["hyperscore"]), score.get("v")
    advice = score.get("recommendation")
    # coloured by the daemon's recommendation: the dashboard decides nothing itself
    style = {"accept": "green", "reject": "red"}.get(str(advice), "yellow")
    text.append("score ", style="dim")
    text.append(f"{hyper:.1f}", style=f"bold {style}")
    if isinstance(v, int | float):
        text.append(f" (V {v:.2f})", style="dim")
    parts = [
        f"{_NAMES.get(name, name)} {score[name]:.2f}"
        for name in _NAMES
        if isinstance(score.get(name), int | float)
    ]
    if parts:
        text.append("  " + ", ".join(parts), style="dim")
    contribution = score.get("contribution_angstrom")
    if isinstance(contribution, int | float):
        text.append(
            f"\n  its particles make the session's map {contribution:.3f} A better (forecast)",
            style="dim",
        )
    if advice:
        text.append(f"\n  recommend {advice}", style=f"bold {style}")
        text.append(f": {score.get('reason') or ''}")
    weakest = score.get("weakest")
    if weakest:
        text.append(f"\n  held down most by {_NAMES.get(str(weakest), str(weakest))}")
    for obligation in score.get("obligations") or []:
        if isinstance(obligation, Mapping) and obligation.get("holds") is False:
            text.append(f"\n✖ {obligation.get('name')}", style="red")
            text.append(f": {obligation.get('message')}")
    return text
