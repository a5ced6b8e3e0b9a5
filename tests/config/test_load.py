"""Loading settings: defaults, presets, and the order defaults < preset < file < env < overrides."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from causalscope.config import (
    Settings,
    default_settings,
    list_presets,
    load_settings,
    preset_description,
    settings_to_dict,
)

WriteToml = Callable[[str, str], Path]


def test_defaults() -> None:
    settings = load_settings()
    assert settings.microscope.voltage_kv == 300.0
    assert settings.microscope.spherical_aberration_mm == 2.7
    assert settings.microscope.amplitude_contrast == 0.07
    assert settings.detector.mtf == "analytic"
    assert settings.detector.gain_reference is None
    assert settings.watcher.settle_s == 5.0
    assert "*.eer" in settings.watcher.movie_patterns
    assert settings.processing.ctf.min_resolution_angstrom == 30.0
    assert settings.processing.ctf.max_resolution_angstrom == 4.0
    assert settings.processing.ctf.defocus_min_um == 0.2
    assert settings.processing.ctf.defocus_max_um == 5.0
    assert settings.processing.ctf.box_px == "auto"
    assert settings.store.directory == Path("sessions")
    assert settings == default_settings()


def test_network_endpoints_default_to_localhost() -> None:
    settings = load_settings()
    assert settings.stream.address == "tcp://127.0.0.1:5555"
    assert settings.store.publish_address == "tcp://127.0.0.1:5556"
    assert settings.store.query_address == "tcp://127.0.0.1:5557"
    assert settings.serve.host == "127.0.0.1"
    assert settings.serve.port == 8000


def test_presets_are_listed() -> None:
    assert list_presets() == [
        "glacios-falcon4",
        "krios-falcon4i-eer",
        "krios-k3",
        "talos-arctica-k2",
    ]
    for name in list_presets():
        assert len(preset_description(name)) > 20, name


@pytest.mark.parametrize(
    ("preset", "voltage_kv", "pixel_size_angstrom", "kind", "frame_format", "size"),
    [
        ("krios-k3", 300.0, 0.83, "counting", "tiff", (5760, 4092)),
        ("krios-falcon4i-eer", 300.0, 0.73, "eer", "eer", (4096, 4096)),
        ("glacios-falcon4", 200.0, 0.92, "eer", "eer", (4096, 4096)),
        ("talos-arctica-k2", 200.0, 1.15, "counting", "mrc", (3838, 3710)),
    ],
)
def test_preset_values(
    preset: str,
    voltage_kv: float,
    pixel_size_angstrom: float,
    kind: str,
    frame_format: str,
    size: tuple[int, int],
) -> None:
    settings = load_settings(preset=preset)
    assert settings.microscope.voltage_kv == voltage_kv
    assert settings.microscope.spherical_aberration_mm == 2.7
    assert settings.microscope.pixel_size_angstrom == pixel_size_angstrom
    assert settings.detector.kind == kind
    assert settings.detector.frame_format == frame_format
    assert (settings.detector.width_px, settings.detector.height_px) == size


def test_preset_specifics() -> None:
    k3 = load_settings(preset="krios-k3")
    assert k3.microscope.energy_filter is True
    assert k3.microscope.energy_filter_slit_ev == 20.0
    falcon = load_settings(preset="krios-falcon4i-eer")
    assert falcon.detector.eer_upsampling == 1
    assert falcon.detector.eer_grouping == 32
    assert falcon.watcher.movie_patterns == ("*.eer",)
    # a preset changes only what it names
    assert falcon.processing == default_settings().processing


def test_file_beats_preset(write_toml: WriteToml) -> None:
    path = write_toml("site.toml", "[microscope]\npixel_size_angstrom = 0.86\n")
    settings = load_settings(path, preset="krios-k3")
    assert settings.microscope.pixel_size_angstrom == 0.86
    assert settings.microscope.energy_filter is True  # still from the preset
    assert settings.detector.name == "Gatan K3"


def test_environment_beats_file(write_toml: WriteToml, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml("site.toml", "[microscope]\nvoltage_kv = 300\n")
    monkeypatch.setenv("CAUSALSCOPE_MICROSCOPE__VOLTAGE_KV", "200")
    monkeypatch.setenv("CAUSALSCOPE_PROCESSING__CTF__BOX_PX", "256")
    monkeypatch.setenv("CAUSALSCOPE_WATCHER__MOVIE_PATTERNS", '["*.eer"]')
    monkeypatch.setenv("causalscope_detector__gain_flip", "y")
    settings = load_settings(path)
    assert settings.microscope.voltage_kv == 200.0
    assert settings.processing.ctf.box_px == 256
    assert settings.watcher.movie_patterns == ("*.eer",)
    assert settings.detector.gain_flip == "y"


def test_prefixed_variables_without_section_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALSCOPE_HOME", "/somewhere")
    assert load_settings() == default_settings()


def test_empty_environment_variable_unsets_an_optional_path(
    write_toml: WriteToml, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml("site.toml", '[detector]\ngain_reference = "gain.mrc"\n')
    assert load_settings(path).detector.gain_reference == Path("gain.mrc")
    monkeypatch.setenv("CAUSALSCOPE_DETECTOR__GAIN_REFERENCE", "")
    assert load_settings(path).detector.gain_reference is None


def test_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALSCOPE_MICROSCOPE__VOLTAGE_KV", "200")
    monkeypatch.setenv("CAUSALSCOPE_MICROSCOPE__PIXEL_SIZE_ANGSTROM", "1.2")
    settings = load_settings(overrides={"microscope": {"voltage_kv": 120}})
    assert settings.microscope.voltage_kv == 120.0
    assert settings.microscope.pixel_size_angstrom == 1.2  # deep merge keeps the sibling


def test_overrides_with_dotted_keys() -> None:
    settings = load_settings(
        preset="talos-arctica-k2",
        overrides={"processing.motion.patches_x": 7, "processing": {"device": "cpu"}},
    )
    assert settings.processing.motion.patches_x == 7
    assert settings.processing.motion.patches_y == 5
    assert settings.processing.device == "cpu"
    assert settings.microscope.voltage_kv == 200.0


def test_settings_constructor_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAUSALSCOPE_TUI__REFRESH_HZ", "10")
    assert Settings().tui.refresh_hz == 10.0
    assert load_settings().tui.refresh_hz == 10.0
    assert default_settings().tui.refresh_hz == 4.0


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.microscope.voltage_kv = 200.0  # type: ignore[misc]


@pytest.mark.parametrize("preset", [None, "krios-k3", "krios-falcon4i-eer"])
def test_dict_round_trip(preset: str | None, write_toml: WriteToml) -> None:
    path = write_toml("site.toml", '[detector]\ngain_reference = "refs/gain.mrc"\n')
    settings = load_settings(path, preset=preset, overrides={"store.session_name": "s1"})
    data = settings_to_dict(settings)
    assert json.loads(json.dumps(data)) == data
    assert data["detector"]["gain_reference"] == "refs/gain.mrc"
    assert data["store"]["session_name"] == "s1"
    assert Settings.model_validate(data) == settings


def test_ctf_fit_options_fit_the_image() -> None:
    """A fixed tile never exceeds the image and the band never passes Nyquist."""
    from causalscope.config.processing import CtfSettings

    small = CtfSettings(box_px=512, max_resolution_angstrom=4.0).fit_options((300, 401), 2.5)
    assert small["box_px"] == 300
    assert small["max_resolution_angstrom"] == 5.25
    auto = CtfSettings().fit_options((4096, 4096), 1.0)
    assert auto["box_px"] == "auto" and auto["max_resolution_angstrom"] == 4.0
    assert auto["min_resolution_angstrom"] == 30.0 and auto["estimate_phase_shift"] is False
