"""Alerts for the operator: gate failures and trends, each with what to do.

:class:`AlertMonitor` sees every committed record in order and returns the alerts it raises.
A trend compares the median of the last ``window // 2`` exposures with the ``window // 2``
before them; an alert is raised once when its condition starts and again only after it has
cleared, so a long episode of thick ice is one alert, not a hundred.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal

from causalscope.config.alerts import AlertSettings
from causalscope.models.records import ExposureRecord

__all__ = ["Alert", "AlertMonitor", "advice_for"]

# what to do, by the family of a gate flag's code (the code's first word)
_ADVICE = {
    "ctf": "Check focus and astigmatism (run the autostigmator) and the ice in this area; "
    "if fits keep failing, move to another square.",
    "drift": "Let the stage settle: raise the delay after stage moves, check the holder.",
    "dose": "Check the beam (spot size, intensity, exposure time) and that the metadata's "
    "dose matches the detector's.",
    "blank": "Check the column valves and the beam: frames arrived without electrons.",
    "saturated": "Lower the dose rate: the detector is saturating.",
    "nonfinite": "The detector or its software wrote invalid pixels: check the camera.",
    "calibration": "The gain reference or defect file does not match the movies: check "
    "detector.gain_reference, gain_rotation and gain_flip.",
    "unreadable": "The movie could not be read: check the transfer from the detector PC.",
}


def advice_for(code: str) -> str:
    """What to do about a gate flag with this code."""
    family = code.split("_", 1)[0]
    return _ADVICE.get(family, "Look at this exposure's reasons in the table.")


@dataclass(frozen=True)
class Alert:
    """One alert: what happened and what to do."""

    code: str
    severity: Literal["warn", "fail"]
    message: str
    advice: str
    exposure_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


class AlertMonitor:
    """Raises alerts from the stream of records (see the module docstring).

    Parameters
    ----------
    settings
        The limits for fit resolution, drift and ice (``[alerts]``); the operator can change
        them live (:meth:`set_threshold`). Default: the built-in limits.
    window
        Exposures a trend looks back over.
    """

    def __init__(self, settings: AlertSettings | None = None, *, window: int = 20) -> None:
        self.thresholds = (settings or AlertSettings()).thresholds()
        self._window = max(4, window)
        self._series: dict[str, deque[float]] = {
            name: deque(maxlen=self._window) for name in ("ice", "fit", "drift")
        }
        self._active: set[str] = set()

    def set_threshold(self, name: str, value: float) -> None:
        """Change a threshold from the next exposure on."""
        if name not in self.thresholds:
            raise ValueError(f"unknown threshold {name!r}; one of {', '.join(self.thresholds)}")
        if not value > 0:
            raise ValueError(f"threshold {name} must be positive, got {value!r}")
        self.thresholds[name] = float(value)

    def update(self, record: ExposureRecord) -> list[Alert]:
        """The alerts this record raises (possibly none)."""
        alerts: list[Alert] = []
        if record.status == "fail":
            failing = [flag for flag in record.flags if flag.severity == "fail"]
            if failing:
                alerts.append(
                    Alert(
                        code=f"gate_{failing[0].code}",
                        severity="fail",
                        message=f"{record.exposure_id} failed: {failing[0].message}",
                        advice=advice_for(failing[0].code),
                        exposure_id=record.exposure_id,
                    )
                )
        if record.ctf is not None:
            if record.ctf.ice_thickness_nm is not None:
                self._series["ice"].append(record.ctf.ice_thickness_nm)
            if record.ctf.fit_resolution_angstrom is not None:
                self._series["fit"].append(record.ctf.fit_resolution_angstrom)
        if record.motion is not None:
            self._series["drift"].append(record.motion.total_drift_px)
        alerts += self._trends(record.exposure_id)
        return alerts

    def _halves(self, name: str) -> tuple[float, float] | None:
        values = list(self._series[name])
        if len(values) < self._window:
            return None
        half = len(values) // 2
        return statistics.median(values[:half]), statistics.median(values[half:])

    def _raise_once(self, code: str, condition: bool, alert: Alert) -> list[Alert]:
        if not condition:
            self._active.discard(code)
            return []
        if code in self._active:
            return []
        self._active.add(code)
        return [alert]

    def _trends(self, exposure_id: str) -> list[Alert]:
        out: list[Alert] = []
        n = self._window
        ice = self._halves("ice")
        if ice is not None:
            before, now = ice
            limit = self.thresholds["ice_thickness_nm"]
            out += self._raise_once(
                "ice_thickening",
                now - before >= 10.0 or now > limit,
                Alert(
                    "ice_thickening",
                    "warn",
                    f"Ice is getting thicker: median {before:.0f} -> {now:.0f} nm over the last "
                    f"{n} exposures (threshold {limit:g} nm)",
                    "Move to thinner squares or holes (brighter in the atlas); thick ice costs "
                    "resolution through inelastic scattering.",
                    exposure_id,
                ),
            )
        fit = self._halves("fit")
        if fit is not None:
            before, now = fit
            limit = self.thresholds["ctf_fit_resolution_angstrom"]
            out += self._raise_once(
                "fit_resolution_falling",
                now > 1.25 * before or now > limit,
                Alert(
                    "fit_resolution_falling",
                    "warn",
                    f"CTF fit resolution is falling: median {before:.1f} -> {now:.1f} A over the "
                    f"last {n} exposures (threshold {limit:g} A)",
                    "Check ice thickness, drift and astigmatism in the table; re-run the "
                    "autostigmator and coma-free alignment if astigmatism rose.",
                    exposure_id,
                ),
            )
        drift = self._halves("drift")
        if drift is not None:
            before, now = drift
            limit = self.thresholds["total_drift_px"]
            out += self._raise_once(
                "drift_rising",
                now > limit or (now > 2.0 * before and now - before > 5.0),
                Alert(
                    "drift_rising",
                    "warn",
                    f"Drift is rising: median total drift {before:.1f} -> {now:.1f} px over the "
                    f"last {n} exposures (threshold {limit:g} px)",
                    "Raise the delay after stage moves; check the holder and the room "
                    "(temperature, vibration).",
                    exposure_id,
                ),
            )
        return out
