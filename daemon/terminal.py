"""What a live session prints for the person at the terminal: :class:`TerminalReporter`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from causalscope.daemon.alerts import Alert
    from causalscope.models.records import ExposureRecord

__all__ = ["TerminalReporter"]


class TerminalReporter:
    """One line per exposure and per problem, for a person at a terminal."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._out = stream or sys.stdout
        self._quiet = quiet
        self._n = 0

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def committed(self, record: ExposureRecord, latency_s: float) -> None:
        """One line: id, status, defocus, fit resolution, ice, drift, latency; then reasons."""
        self._n += 1
        if self._quiet:
            return
        parts = [f"[{self._n:4d}] {record.exposure_id}  {record.status:<4}"]
        if record.ctf is not None:
            parts.append(f"defocus {record.ctf.defocus_angstrom / 1e4:5.2f} um")
            fit = record.ctf.fit_resolution_angstrom
            parts.append(f"fit {fit:4.1f} A" if fit else "fit   -  ")
            if record.ctf.ice_thickness_nm is not None:
                parts.append(f"ice {record.ctf.ice_thickness_nm:3.0f} nm")
        if record.motion is not None:
            parts.append(f"drift {record.motion.total_drift_px:5.1f} px")
        parts.append(f"{latency_s:5.1f} s")
        self._print("  ".join(parts))
        if record.status != "pass":
            for reason in record.reasons[:3]:
                self._print(f"         {reason}")

    def quarantined(self, exposure_id: str | None, origin: str, code: str, reason: str) -> None:
        """A quarantined input, with its reason."""
        self._print(f"[quarantine] {exposure_id or origin}: {code}: {reason}")

    def skipped(self, exposure_id: str, state: str) -> None:
        """Seen before: nothing to do."""
        if not self._quiet:
            self._print(f"[  skip] {exposure_id}: already {state} in this session")

    def problem(self, title: str, message: str) -> None:
        """Something the operator must know."""
        self._print(f"[problem] {title}: {message}")

    def alert(self, alert: Alert) -> None:
        """A gate failure or a trend, with what to do."""
        if alert.code.startswith("gate_"):
            return  # the exposure's own line already says why it failed
        self._print(f"[ alert] {alert.message}\n         what to do: {alert.advice}")
