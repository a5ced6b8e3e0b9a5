"""Text for the dashboard: table cells, the details pane, the overview, alerts (no decisions).

Every function here turns published values into Rich text; none decides anything about the
session (the daemon's gate and alerts do that).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text

__all__ = [
    "COLUMNS",
    "SORTS",
    "RowFilter",
    "alert_text",
    "cells",
    "details_text",
    "duration",
    "overview_text",
    "short_id",
    "value",
]

Row = Mapping[str, Any]

GATE_STYLE = {
    "pass": "green",
    "warn": "yellow",
    "fail": "bold red",
    "seen": "dim",
    "quarantined": "magenta",
}
_LABEL_TEXT = {"accept": ("✓ acc", "green"), "reject": ("✗ rej", "red")}


def value(row: Row, part: str, name: str) -> float | None:
    """``row[part][name]`` as a float, None when absent."""
    section = row.get(part)
    if not isinstance(section, Mapping):
        return None
    got = section.get(name)
    return float(got) if isinstance(got, int | float) and not isinstance(got, bool) else None


def gate(row: Row) -> str:
    """``pass``/``warn``/``fail`` for done exposures, else the state (``seen``/``quarantined``)."""
    if row.get("state") == "done" and row.get("gate_status"):
        return str(row["gate_status"])
    return str(row.get("state") or "seen")


def short_id(exposure_id: str, width: int = 20) -> str:
    """The id cut in the middle to ``width`` characters (EPU names are long; both ends matter)."""
    if len(exposure_id) <= width:
        return exposure_id
    head = (width - 1) // 2
    return f"{exposure_id[:head]}…{exposure_id[-(width - 1 - head) :]}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def defocus_um(row: Row) -> float | None:
    """Mean defocus in µm."""
    a = value(row, "ctf", "defocus_angstrom")
    return None if a is None else a / 1e4


@dataclass(frozen=True)
class Column:
    """A table column: its key, heading and width."""

    key: str
    heading: str
    width: int


COLUMNS: tuple[Column, ...] = (
    Column("exposure", "exposure", 18),
    Column("gate", "gate", 4),
    Column("defocus", "def µm", 6),
    Column("res", "res Å", 5),
    Column("ice", "ice nm", 6),
    Column("drift", "drift", 5),
    Column("label", "label", 5),
    Column("flags", "flags", 11),
)


def cells(row: Row, label: str | None) -> tuple[Text | str, ...]:
    """The table cells of one exposure, in :data:`COLUMNS` order."""
    status = gate(row)
    flags = row.get("flags") or []
    codes = ",".join(str(f.get("code")) for f in flags if isinstance(f, Mapping))
    label_text, label_style = _LABEL_TEXT.get(label or "", ("", ""))
    return (
        short_id(str(row.get("exposure_id", "?")), 18),
        Text(status[:4], style=GATE_STYLE.get(status, "")),
        Text(_num(defocus_um(row), ".2f"), justify="right"),
        Text(_num(value(row, "ctf", "fit_resolution_angstrom"), ".1f"), justify="right"),
        Text(_num(value(row, "ctf", "ice_thickness_nm"), ".0f"), justify="right"),
        Text(_num(value(row, "motion", "total_drift_px"), ".1f"), justify="right"),
        Text(label_text, style=label_style),
        Text(codes, style="red" if status == "fail" else "yellow" if codes else ""),
    )


# Sort orders: name -> key of a row (worst first for the quality measures; None last).
_GATE_RANK = {"fail": 0, "quarantined": 1, "warn": 2, "pass": 3, "seen": 4}


def _desc(x: float | None) -> tuple[bool, float]:
    return (x is None, -(x or 0.0))


SORTS: dict[str, Callable[[Row], Any] | None] = {
    "seen": None,  # the order exposures were seen in
    "gate": lambda r: _GATE_RANK.get(gate(r), 5),
    "resolution": lambda r: _desc(value(r, "ctf", "fit_resolution_angstrom")),
    "ice": lambda r: _desc(value(r, "ctf", "ice_thickness_nm")),
    "drift": lambda r: _desc(value(r, "motion", "total_drift_px")),
    "defocus": lambda r: _desc(defocus_um(r)),
}

_STATUS_WORDS = frozenset({"pass", "warn", "fail", "seen", "quarantined"})
_LABEL_WORDS = {"accepted": "accept", "rejected": "reject"}


@dataclass(frozen=True)
class RowFilter:
    """A filter typed by the operator: status words (any of them) and text (all of it).

    ``fail warn`` shows failed or warned exposures; ``flagged`` those with any flag;
    ``accepted``, ``rejected``, ``unlabelled`` select by label; other words must appear in
    the id or a flag's code or message (case-insensitive).
    """

    text: str = ""

    def _words(self) -> list[str]:
        return self.text.lower().split()

    def __bool__(self) -> bool:
        return bool(self._words())

    def matches(self, row: Row, label: str | None) -> bool:
        """Whether ``row`` (labelled ``label``) passes."""
        words = self._words()
        statuses = [w for w in words if w in _STATUS_WORDS]
        if statuses and gate(row) not in statuses:
            return False
        flags = [f for f in row.get("flags") or [] if isinstance(f, Mapping)]
        haystack: str | None = None
        for word in words:
            if word in _STATUS_WORDS:
                continue
            if word == "flagged":
                if not flags:
                    return False
            elif word in _LABEL_WORDS:
                if label != _LABEL_WORDS[word]:
                    return False
            elif word == "unlabelled":
                if label is not None:
                    return False
            else:
                if haystack is None:
                    parts = [str(row.get("exposure_id", ""))]
                    parts += [f"{f.get('code')} {f.get('message')}" for f in flags]
                    haystack = " ".join(parts).lower()
                if word not in haystack:
                    return False
        return True


def duration(seconds: float | None) -> str:
    """``h:mm:ss``."""
    if seconds is None:
        return "-"
    total = int(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _rate(x: Any) -> str:
    return "-" if not isinstance(x, int | float) else f"{x:.1f}"


def overview_text(
    status: Mapping[str, Any] | None,
    *,
    name: str,
    live: bool,
    connection: str,
    shown: int,
    total: int,
    causes: Text | None = None,
    reconstruction: Text | None = None,
) -> Text:
    """The overview: state, counts, queue, pace against acquisition, workers and devices.

    ``connection`` is ``"ok"``, ``"lost"`` or ``"connecting"``; ``causes`` (the causal model's
    headline) and ``reconstruction`` (the running reconstructions') are lines of their own.
    """
    s: Mapping[str, Any] = status or {}
    text = Text()
    text.append(f"{name} ", style="bold")
    if not live:
        text.append("■ finished", style="bold blue")
    elif connection == "lost":
        text.append("✖ DAEMON LOST, reconnecting…", style="bold white on red")
    elif connection == "connecting":
        text.append("… connecting", style="bold yellow")
    elif s.get("paused"):
        text.append("⏸ PAUSED", style="bold black on yellow")
    else:
        text.append("● live", style="bold green")
    text.append(f"  {duration(s.get('elapsed_s'))}")
    text.append("  workers ", style="dim")
    text.append(str(s.get("workers", "-")))
    text.append("  devices ", style="dim")
    text.append(str(s.get("devices", "-")))
    if s.get("picker"):
        text.append("  picker ", style="dim")
        picker = str(s["picker"])
        text.append(picker, style="green" if picker.startswith("fine-tuned") else "")
    text.append("\n")
    text.append("done ", style="dim")
    text.append(f"{s.get('done', total)}/{s.get('seen', total)} ")
    for key, style in (("pass", "green"), ("warn", "yellow"), ("fail", "red")):
        text.append(f"{key} ", style="dim")
        text.append(f"{s.get(key, '-')} ", style=style)
    if s.get("quarantined"):
        text.append("quar ", style="dim")
        text.append(f"{s.get('quarantined')} ", style="magenta")
    text.append("│ queue ", style="dim")
    text.append(f"{s.get('queue', '-')}+{s.get('in_flight', '-')}")
    text.append(" │ ", style="dim")
    text.append(f"{_rate(s.get('processing_per_min'))}")
    text.append(" vs acq ", style="dim")
    text.append(f"{_rate(s.get('acquisition_per_min'))}/min ")
    keeping_up = s.get("keeping_up")
    if keeping_up is True:
        text.append("keeping up", style="green")
    elif keeping_up is False:
        text.append("FALLING BEHIND", style="bold red")
    if shown != total:
        text.append(f" │ showing {shown}/{total}", style="cyan")
    for line in (causes, reconstruction):
        if line is not None:
            text.append("\n")
            text.append_text(line)
    return text


_SEVERITY = {"fail": ("✖ FAIL", "bold red"), "warn": ("▲ WARN", "bold yellow")}


def alert_text(alert: Mapping[str, Any]) -> Text:
    """One alert: severity, message, exposure, then what to do."""
    data = alert.get("data") if isinstance(alert.get("data"), Mapping) else {}
    assert isinstance(data, Mapping)
    mark, style = _SEVERITY.get(str(data.get("severity")), ("• INFO", "bold cyan"))
    text = Text()
    text.append(f"{mark} ", style=style)
    text.append(str(alert.get("message", "")))
    if data.get("exposure_id"):
        text.append(f" [{data['exposure_id']}]", style="dim")
    if data.get("advice"):
        text.append("\n   → ", style="cyan")
        text.append(str(data["advice"]), style="italic")
    return text


def _motion(row: Row, part: str) -> float | None:
    return value(row, "motion", f"accumulated_motion_{part}_angstrom")


def details_text(
    row: Row | None,
    label: str | None,
    quarantine_reason: str | None = None,
    *,
    causes: Text | None = None,
    score: Text | None = None,
) -> Text:
    """The selected exposure: CTF, motion, dose and flags with their reasons, and its label.

    ``causes`` (the causal model's verdict on it) and ``score`` (its score and failed
    obligations) come after the flags, before the numbers.
    """
    text = Text()
    if row is None:
        text.append("no exposure selected", style="dim")
        return text
    _append_heading(text, row, label)
    _append_flags(text, row)
    if quarantine_reason:
        text.append(f"quarantined: {quarantine_reason}\n", style="magenta")
    for part in (causes, score):
        if part is not None:
            text.append_text(part)
            text.append("\n")
    for parts in _number_lines(row):
        # "-" alone or "- unit": no value (a negative number is "-0.5 ...")
        shown = [(k, got) for k, got in parts if not (got[:1] == "-" and not got[1:2].isdigit())]
        for i, (k, got) in enumerate(shown):
            text.append(("  " if i else "") + k.lstrip(), style="dim")
            text.append(f" {got}")
        if shown:
            text.append("\n")
    text.rstrip()
    return text


def _append_heading(text: Text, row: Row, label: str | None) -> None:
    status = gate(row)
    text.append(f"{row.get('exposure_id')} ", style="bold")
    text.append(status.upper(), style=GATE_STYLE.get(status, ""))
    if label:
        mark, style = _LABEL_TEXT.get(label, (label, ""))
        text.append(f" {mark}", style=style)
    text.append("\n")


def _append_flags(text: Text, row: Row) -> None:
    """Failures first, then warnings, each with its value against its limit; then the CTF
    fit's warnings and the worker's problems."""
    flags = [f for f in row.get("flags") or [] if isinstance(f, Mapping)]
    for flag in sorted(flags, key=lambda f: f.get("severity") != "fail"):
        mark, style = ("✖", "red") if flag.get("severity") == "fail" else ("▲", "yellow")
        text.append(f"{mark} {flag.get('code')}", style=style)
        text.append(f": {flag.get('message')}")
        got, limit = flag.get("value"), flag.get("limit_value", flag.get("limit"))
        if isinstance(got, int | float) and isinstance(limit, int | float):
            text.append(f" ({got:g} vs {limit:g})", style="dim")
        text.append("\n")
    warnings = (row.get("ctf") or {}).get("warnings") or []
    for warning in [*warnings, *(row.get("problems") or [])]:
        text.append(f"• {warning}\n", style="yellow")


def _number_lines(row: Row) -> list[list[tuple[str, str]]]:
    """The details' numbers, a line of (name, shown value) pairs each; "-" where unknown."""
    u, v = value(row, "ctf", "defocus_u_angstrom"), value(row, "ctf", "defocus_v_angstrom")
    sigma = value(row, "ctf", "defocus_sigma_angstrom")
    ice_sigma = value(row, "ctf", "ice_thickness_sigma_nm")
    dose = row.get("dose_e_per_a2")
    latency = row.get("latency_s")
    return [
        [
            ("defocus", f"{_num(defocus_um(row), '.3f')} µm"),
            ("±", "-" if sigma is None else f"{sigma:.0f} Å"),
        ],
        [
            ("  U", _num(None if u is None else u / 1e4, ".3f")),
            ("V", _num(None if v is None else v / 1e4, ".3f")),
            ("∠", f"{_num(value(row, 'ctf', 'defocus_angle_deg'), '.0f')}°"),
        ],
        [
            ("fit", f"{_num(value(row, 'ctf', 'fit_resolution_angstrom'), '.2f')} Å"),
            ("FOM", _num(value(row, "ctf", "figure_of_merit"), ".2f")),
        ],
        [
            ("astig", f"{_num(value(row, 'ctf', 'astigmatism_angstrom'), '.0f')} Å"),
            ("phase", f"{_num(value(row, 'ctf', 'phase_shift_deg'), '.0f')}°"),
        ],
        [
            ("ice", f"{_num(value(row, 'ctf', 'ice_thickness_nm'), '.0f')} nm"),
            ("±", "-" if ice_sigma is None else f"{ice_sigma:.0f} nm"),
        ],
        [
            ("drift", f"{_num(value(row, 'motion', 'total_drift_px'), '.1f')} px"),
            ("step", f"{_num(value(row, 'motion', 'max_frame_shift_px'), '.2f')} px"),
        ],
        [
            ("early", f"{_num(_motion(row, 'early'), '.1f')} Å"),
            ("late", f"{_num(_motion(row, 'late'), '.1f')} Å"),
        ],
        [
            ("dose", "-" if dose is None else f"{dose:.0f} e/Å²"),
            ("frames", str(row.get("n_frames") or "-")),
        ],
        [
            ("on", str(row.get("device") or "-")),
            ("latency", "-" if latency is None else f"{latency:.1f} s"),
        ],
    ]
