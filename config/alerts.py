"""Settings of the operator's alerts: the limits that raise a trend alert.

The daemon's alert monitor holds each trend's median over the recent exposures against these
limits; the dashboard draws them as threshold lines, and the operator can change them while the
session runs.
"""

from __future__ import annotations

from pydantic import Field

from causalscope.config._common import Section

__all__ = ["THRESHOLD_NAMES", "AlertSettings"]

#: The thresholds, by name; the operator's live ``set_threshold`` uses the same names.
THRESHOLD_NAMES = ("ctf_fit_resolution_angstrom", "total_drift_px", "ice_thickness_nm")


class AlertSettings(Section):
    """Alerts for the operator: trend limits (also the threshold lines of the dashboard's plots)."""

    ctf_fit_resolution_angstrom: float = Field(
        6.0,
        gt=0,
        le=500,
        description=(
            "Alert when the median CTF fit resolution of the recent exposures is worse (larger) "
            "than this."
        ),
    )
    total_drift_px: float = Field(
        30.0,
        gt=0,
        le=10000,
        description="Alert when the median total drift of the recent exposures is above this.",
    )
    ice_thickness_nm: float = Field(
        80.0,
        gt=0,
        le=2000,
        description="Alert when the median ice thickness of the recent exposures is above this.",
    )

    def thresholds(self) -> dict[str, float]:
        """The thresholds by name (:data:`THRESHOLD_NAMES`)."""
        return {name: float(getattr(self, name)) for name in THRESHOLD_NAMES}
