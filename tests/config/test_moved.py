"""Alert thresholds live in [alerts]; settings that still give them under [tui] keep working,
with a warning that names where the value came from and where it goes now."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from causalscope.config import (
    AlertSettings,
    MovedSettingWarning,
    Settings,
    TuiSettings,
    default_settings,
    load_settings,
)
from causalscope.models.errors import ConfigError

WriteToml = Callable[[str, str], Path]

_OLD_FILE = """\
[tui]
refresh_hz = 2.0
ctf_fit_resolution_angstrom = 5.0
ice_thickness_nm = 60
"""


def test_thresholds_have_their_own_table_and_the_dashboard_table_has_none() -> None:
    settings = default_settings()
    assert settings.alerts == AlertSettings()
    assert settings.alerts.thresholds() == {
        "ctf_fit_resolution_angstrom": 6.0,
        "total_drift_px": 30.0,
        "ice_thickness_nm": 80.0,
    }
    assert set(TuiSettings.model_fields) == {"refresh_hz", "theme"}


def test_alerts_table_in_a_file(write_toml: WriteToml) -> None:
    path = write_toml("site.toml", "[alerts]\ntotal_drift_px = 12.5\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        settings = load_settings(path)
    assert settings.alerts.total_drift_px == 12.5
    assert settings.alerts.ice_thickness_nm == 80.0


def test_old_file_keeps_working_and_says_where_each_threshold_moved(
    write_toml: WriteToml,
) -> None:
    path = write_toml("old.toml", _OLD_FILE)
    with pytest.warns(MovedSettingWarning) as caught:
        settings = load_settings(path)
    assert settings.alerts.ctf_fit_resolution_angstrom == 5.0
    assert settings.alerts.ice_thickness_nm == 60.0
    assert settings.alerts.total_drift_px == 30.0  # not given: the default
    assert settings.tui.refresh_hz == 2.0  # the dashboard's own settings stay where they are
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        f"tui.ctf_fit_resolution_angstrom = 5.0 in {path}: this setting has moved and is used "
        "as alerts.ctf_fit_resolution_angstrom; write it under [alerts] instead",
        f"tui.ice_thickness_nm = 60 in {path}: this setting has moved and is used as "
        "alerts.ice_thickness_nm; write it under [alerts] instead",
    ]


def test_old_environment_variable_names_the_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALSCOPE_TUI__TOTAL_DRIFT_PX", "12")
    with pytest.warns(MovedSettingWarning) as caught:
        settings = load_settings()
    assert settings.alerts.total_drift_px == 12.0
    (message,) = [str(w.message) for w in caught]
    assert "from environment variable CAUSALSCOPE_TUI__TOTAL_DRIFT_PX" in message
    assert message.endswith("set CAUSALSCOPE_ALERTS__TOTAL_DRIFT_PX instead")


def test_a_moved_setting_keeps_its_layer_priority(
    write_toml: WriteToml, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_file = write_toml("new.toml", "[alerts]\nice_thickness_nm = 50\n")
    old_file = write_toml("old.toml", "[tui]\nice_thickness_nm = 50\n")
    monkeypatch.setenv("CAUSALSCOPE_TUI__ICE_THICKNESS_NM", "70")
    with pytest.warns(MovedSettingWarning):
        assert load_settings(new_file).alerts.ice_thickness_nm == 70.0  # environment > file
    monkeypatch.delenv("CAUSALSCOPE_TUI__ICE_THICKNESS_NM")
    monkeypatch.setenv("CAUSALSCOPE_ALERTS__ICE_THICKNESS_NM", "70")
    with pytest.warns(MovedSettingWarning):
        assert load_settings(old_file).alerts.ice_thickness_nm == 70.0
    with pytest.warns(MovedSettingWarning):
        overridden = load_settings(old_file, overrides={"tui.ice_thickness_nm": 90})
    assert overridden.alerts.ice_thickness_nm == 90.0  # overrides > environment


def test_both_places_in_one_file_is_an_error(write_toml: WriteToml) -> None:
    text = "[tui]\nice_thickness_nm = 60\n[alerts]\nice_thickness_nm = 70\n"
    path = write_toml("both.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.title == "Setting given twice"
    assert caught.value.message == (
        f"ice_thickness_nm is set both as tui.ice_thickness_nm = 60 and as "
        f"alerts.ice_thickness_nm = 70 in {path}; tui.ice_thickness_nm is its old place: remove it"
    )
    assert caught.value.path == path


def test_a_bad_value_in_the_old_place_names_the_file(write_toml: WriteToml) -> None:
    path = write_toml("old.toml", "[tui]\nice_thickness_nm = -5\n")
    with pytest.warns(MovedSettingWarning), pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.message.startswith(f"alerts.ice_thickness_nm = -5 in {path}: expected 0 <")


def test_settings_built_directly_are_moved_too() -> None:
    with pytest.warns(MovedSettingWarning, match=r"tui\.total_drift_px = 9\.0 in the given"):
        settings = Settings.model_validate({"tui": {"total_drift_px": 9.0, "theme": "nord"}})
    assert settings.alerts.total_drift_px == 9.0
    assert settings.tui.theme == "nord"
    with pytest.raises(ValueError, match=r"set both as tui\.total_drift_px = 9\.0"):
        Settings.model_validate({"tui": {"total_drift_px": 9.0}, "alerts": {"total_drift_px": 8}})


def test_the_command_line_shows_the_warning(write_toml: WriteToml, tmp_path: Path) -> None:
    path = write_toml("old.toml", _OLD_FILE)
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "causalscope.daemon.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=repo,
        env={"PYTHONPATH": str(repo), "PATH": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    shown = re.findall(r"^causalscope: warning: (tui\.\w+) = ", result.stderr, re.M)
    assert sorted(shown) == ["tui.ctf_fit_resolution_angstrom", "tui.ice_thickness_nm"]
