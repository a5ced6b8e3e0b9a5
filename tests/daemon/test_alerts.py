"""Alerts: raised on gate failures and on trends, once per episode, with advice."""

from __future__ import annotations

from pathlib import Path

import pytest

from causalscope.config import MovedSettingWarning, load_settings
from causalscope.daemon.alerts import AlertMonitor, advice_for
from causalscope.models.records import GateFlag
from tests.daemon.store._records import make_record


def _feed(monitor: AlertMonitor, ice: list[float], fit: float = 4.0, drift: float = 3.0):
    alerts = []
    for i, nm in enumerate(ice):
        record = make_record(
            f"e{i:03d}", ice_thickness_nm=nm, fit_resolution_angstrom=fit, total_drift_px=drift
        )
        alerts += monitor.update(record)
    return alerts


def test_thickening_ice_raises_one_alert_per_episode() -> None:
    monitor = AlertMonitor(window=20)
    steady = [40.0] * 20
    assert _feed(monitor, steady) == []
    rising = [40.0 + 2.0 * i for i in range(1, 21)]  # median rises by ~20 nm
    alerts = _feed(monitor, rising)
    assert [a.code for a in alerts] == ["ice_thickening"]
    assert "40 ->" in alerts[0].message and "thinner" in alerts[0].advice
    # the episode ends, then a second one is a new alert
    assert _feed(monitor, [40.0] * 20) == []
    assert [a.code for a in _feed(monitor, [90.0] * 20)] == ["ice_thickening"]


def test_thresholds_are_live() -> None:
    monitor = AlertMonitor(window=4)
    assert _feed(monitor, [40.0] * 4, fit=5.0) == []
    monitor.set_threshold("ctf_fit_resolution_angstrom", 4.5)
    assert [a.code for a in _feed(monitor, [40.0] * 2, fit=5.0)] == ["fit_resolution_falling"]
    with pytest.raises(ValueError, match="unknown threshold"):
        monitor.set_threshold("defocus", 1.0)
    with pytest.raises(ValueError, match="positive"):
        monitor.set_threshold("total_drift_px", -1)


def test_a_gate_failure_is_an_alert_with_its_reason_and_advice() -> None:
    flag = GateFlag(code="drift_jump", severity="fail", message="frame 3 moved 80 px")
    alert = AlertMonitor().update(make_record("x", status="fail", flags=[flag]))[0]
    assert alert.code == "gate_drift_jump" and alert.severity == "fail"
    assert "x failed: frame 3 moved 80 px" == alert.message
    assert alert.advice == advice_for("drift_jump") and "stage" in alert.advice


def test_thresholds_come_from_the_alerts_settings(tmp_path: Path) -> None:
    steady = [60.0] * 20  # no trend: only the threshold can raise the alert
    assert _feed(AlertMonitor(load_settings().alerts), steady) == []
    new = tmp_path / "new.toml"
    new.write_text("[alerts]\nice_thickness_nm = 50\n", encoding="utf-8")
    monitor = AlertMonitor(load_settings(new).alerts)
    alerts = _feed(monitor, steady)
    assert [a.code for a in alerts] == ["ice_thickening"]
    assert "(threshold 50 nm)" in alerts[0].message
    # a settings file from before [alerts] existed gives the same monitor, with a warning
    old = tmp_path / "old.toml"
    old.write_text("[tui]\nice_thickness_nm = 50\n", encoding="utf-8")
    with pytest.warns(MovedSettingWarning):
        settings = load_settings(old)
    assert AlertMonitor(settings.alerts).thresholds == monitor.thresholds


def test_the_dashboard_draws_the_alerts_thresholds() -> None:
    from causalscope.tui import make_app

    class _Source:  # the dashboard's constructor reads only this of its source
        live = False

    settings = load_settings(overrides={"alerts.total_drift_px": 12.5})
    app = make_app(settings, _Source())  # type: ignore[arg-type]
    assert app.state.thresholds == AlertMonitor(settings.alerts).thresholds
    assert app.state.thresholds["total_drift_px"] == 12.5
