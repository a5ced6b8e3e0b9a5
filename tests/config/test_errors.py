"""Settings errors name the origin, the dotted setting and the bad value, and what is expected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from causalscope.config import load_settings
from causalscope.models.errors import ConfigError

WriteToml = Callable[[str, str], Path]


def _error_for(path: Path | None = None, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_wrong_type(write_toml: WriteToml) -> None:
    path = write_toml("my.toml", '[microscope]\nvoltage_kv = "three hundred"\n')
    error = _error_for(path)
    assert error.title == "Invalid setting"
    assert error.path == path
    assert error.message == (
        f'microscope.voltage_kv = "three hundred" in {path}: expected a number in kV (e.g. 300)'
    )


def test_volts_instead_of_kilovolts(write_toml: WriteToml) -> None:
    path = write_toml("my.toml", "[microscope]\nvoltage_kv = 300000\n")
    message = _error_for(path).message
    assert f"microscope.voltage_kv = 300000 in {path}" in message
    assert "60 <= voltage_kv <= 400" in message
    assert "300000 V = 300 kV" in message


@pytest.mark.parametrize(
    ("line", "dotted", "hint"),
    [
        ("[microscope]\namplitude_contrast = 7", "microscope.amplitude_contrast = 7", "percent"),
        ("[microscope]\npixel_size_angstrom = 0.083", "pixel_size_angstrom = 0.083", "in nm?"),
        ("[microscope]\nspherical_aberration_mm = 2700", "aberration_mm = 2700", "2.7 mm"),
        ("[processing.ctf]\ndefocus_max_um = 50000", "defocus_max_um = 50000", "5 um"),
        ("[watcher]\nsettle_s = 5000", "watcher.settle_s = 5000", "5000 ms = 5 s"),
    ],
)
def test_unit_mistakes_get_a_hint(write_toml: WriteToml, line: str, dotted: str, hint: str) -> None:
    path = write_toml("units.toml", line + "\n")
    message = _error_for(path).message
    assert dotted in message
    assert hint in message
    assert "units.toml" in message


def test_unknown_key_suggests_the_right_one(write_toml: WriteToml) -> None:
    path = write_toml("typo.toml", "[microscope]\nvoltage_kV = 200\n")
    message = _error_for(path).message
    assert message.startswith(f"unknown setting microscope.voltage_kV in {path}")
    assert "did you mean voltage_kv?" in message


def test_unknown_table_and_misplaced_key(write_toml: WriteToml) -> None:
    path = write_toml("typo.toml", "pixel_size_angstrom = 1.0\n[detecter]\nkind = 'eer'\n")
    error = _error_for(path)
    assert error.title == "2 invalid settings"
    assert "pixel_size_angstrom belongs in the [microscope] table" in error.message
    assert f"unknown table [detecter] in {path}; did you mean detector?" in error.message


def test_other_spellings_are_recognised(write_toml: WriteToml) -> None:
    path = write_toml("relion.toml", "[microscope]\ncs = 2.7\n")
    assert "did you mean spherical_aberration_mm?" in _error_for(path).message


def test_choices_and_cross_field_rules(write_toml: WriteToml) -> None:
    text = (
        '[detector]\ngain_flip = "z"\neer_upsampling = 3\n'
        "[processing.ctf]\nmin_resolution_angstrom = 3.0\n"
    )
    message = _error_for(write_toml("c.toml", text)).message
    assert 'detector.gain_flip = "z"' in message
    assert "expected one of 'none', 'x' or 'y'" in message
    assert "detector.eer_upsampling = 3" in message
    assert "[processing.ctf]" in message
    assert "min_resolution_angstrom (3) must be larger than max_resolution_angstrom (4)" in message


def test_eer_format_needs_eer_kind(write_toml: WriteToml) -> None:
    path = write_toml("eer.toml", '[detector]\nframe_format = "eer"\n')
    message = _error_for(path).message
    assert f"[detector] in {path}" in message
    assert "frame_format = 'eer' does not match kind = 'counting'" in message


def test_bad_address(write_toml: WriteToml) -> None:
    path = write_toml("net.toml", '[store]\npublish_address = "localhost:5556"\n')
    message = _error_for(path).message
    assert f'store.publish_address = "localhost:5556" in {path}' in message
    assert "tcp://127.0.0.1:5556" in message


def test_bad_toml_syntax(write_toml: WriteToml) -> None:
    path = write_toml("broken.toml", '[microscope]\nname = "Krios"\nvoltage_kv = three hundred\n')
    error = _error_for(path)
    assert error.title == "Invalid TOML"
    assert error.path == path
    assert f"microscope.voltage_kv = three hundred in {path}, line 3" in error.message
    assert "must be quoted" in error.message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    error = _error_for(path)
    assert error.title == "Settings file not found"
    assert str(path) in error.message
    assert error.path == path


def test_unknown_preset_lists_the_presets() -> None:
    error = _error_for(preset="krios-k2")
    assert error.title == "Unknown preset"
    assert "'krios-k2'" in error.message
    assert "krios-k3, talos-arctica-k2" in error.message


def test_environment_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALSCOPE_MICROSCOPE__VOLTAGE_KV", "300000")
    error = _error_for()
    assert error.path is None
    assert error.message.startswith(
        'microscope.voltage_kv = "300000" from environment variable '
        "CAUSALSCOPE_MICROSCOPE__VOLTAGE_KV: expected 60 <= voltage_kv <= 400 (kV)"
    )
    assert "300000 V = 300 kV" in error.message


def test_environment_typo_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALSCOPE_MICROSCOPE__VOLTAGE", "200")
    message = _error_for().message
    assert "unknown setting microscope.voltage from environment variable" in message
    assert "CAUSALSCOPE_MICROSCOPE__VOLTAGE" in message
    assert "did you mean voltage_kv?" in message


def test_invalid_json_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALSCOPE_WATCHER__MOVIE_PATTERNS", "[*.eer]")
    message = _error_for().message
    assert "CAUSALSCOPE_WATCHER__MOVIE_PATTERNS = '[*.eer]'" in message


def test_error_names_the_layer_that_gave_the_value(write_toml: WriteToml) -> None:
    # the preset is fine; the file breaks it; the overrides break something else
    path = write_toml("site.toml", "[microscope]\npixel_size_angstrom = 83\n")
    error = _error_for(path, preset="krios-k3", overrides={"serve": {"port": 0}})
    assert error.title == "2 invalid settings"
    assert f"microscope.pixel_size_angstrom = 83 in {path}" in error.message
    assert "serve.port = 0 in the command-line options: expected 1 <= port <= 65535" in (
        error.message
    )
    assert error.path == path


def test_value_from_preset_is_attributed_to_it(write_toml: WriteToml) -> None:
    # kind comes from the preset, frame_format from the file: the section error names the file
    path = write_toml("mrc.toml", '[detector]\nframe_format = "mrc"\n')
    message = _error_for(path, preset="krios-falcon4i-eer").message
    assert f"[detector] in {path}" in message
    assert "does not match kind = 'eer'" in message


def test_bad_list_item_names_its_index(write_toml: WriteToml) -> None:
    path = write_toml("list.toml", '[watcher]\nmovie_patterns = ["*.tif", 3]\n')
    message = _error_for(path).message
    assert message.startswith(f"watcher.movie_patterns[1] = 3 in {path}: expected text in quotes")


def test_wrong_types_of_other_kinds(write_toml: WriteToml) -> None:
    text = '[processing]\nmax_in_flight = 2.5\ndose_weighting = "maybe"\nmotion = 3\n'
    message = _error_for(write_toml("kinds.toml", text)).message
    assert "processing.max_in_flight = 2.5 in" in message
    assert "expected a whole number (e.g. 4)" in message
    assert 'processing.dose_weighting = "maybe" in' in message
    assert "expected true or false" in message
    assert "processing.motion = 3 in" in message
    assert "expected a table [processing.motion] of settings" in message
