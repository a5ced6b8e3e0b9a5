"""The commented default file is generated from the models and never drifts from them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from causalscope import config
from causalscope.config import Settings, default_settings, default_toml, load_settings, render_toml
from causalscope.config.render import toml_value

DEFAULT_FILE = Path(config.__file__).parent / "default.toml"


def test_committed_default_file_is_the_rendering() -> None:
    assert DEFAULT_FILE.read_text(encoding="utf-8") == default_toml(), (
        "config/default.toml is out of date; regenerate it with "
        "`causalscope config default > config/default.toml`"
    )


def test_default_file_loads_as_the_defaults() -> None:
    assert load_settings(DEFAULT_FILE) == default_settings()


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(_fields(annotation, f"{prefix}{name}."))
        else:
            found.append((f"{prefix}{name}", info.description))
    return found


def test_every_setting_is_described_in_the_default_file() -> None:
    text = default_toml()
    fields = _fields(Settings)
    assert len(fields) > 60
    for dotted, description in fields:
        assert description, f"{dotted} has no description"
        assert description.split()[0] in text, dotted


def test_default_file_comments_show_defaults_and_ranges() -> None:
    text = default_toml()
    assert "[microscope]\n# Instrument name, for records.\n" in text
    assert "# allowed: 60 <= voltage_kv <= 400\nvoltage_kv = 300.0\n" in text
    assert '# allowed: "counting", "eer", "integrating"\nkind = "counting"\n' in text
    assert '# gain_reference = "gain/CountRef.mrc"  (not set)\n' in text
    assert "\n[processing.ctf]\n" in text
    assert "CAUSALSCOPE_MICROSCOPE__VOLTAGE_KV=200" in text


@pytest.mark.parametrize("preset", ["krios-k3", "glacios-falcon4"])
def test_rendered_settings_round_trip(preset: str, tmp_path: Path) -> None:
    settings = load_settings(
        preset=preset,
        overrides={"detector.gain_reference": "g.mrc", "store.session_name": "run_7"},
    )
    path = tmp_path / "resolved.toml"
    text = render_toml(settings, comments=False)
    assert '\ngain_reference = "g.mrc"\n' in text
    assert '\n# defects_file = "gain/defects.txt"  (not set)\n' in text  # unset: no TOML null
    assert "# Instrument name" not in text
    path.write_text(text, encoding="utf-8")
    assert load_settings(path) == settings


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (3, "3"),
        (0.07, "0.07"),
        (1e-05, "1e-05"),
        (float("inf"), "inf"),
        ('a "q" \\ \n', '"a \\"q\\" \\\\ \\n"'),
        (["*.tif", "*.eer"], '["*.tif", "*.eer"]'),
        ({"a b": 1, "c": [1.5]}, '{ "a b" = 1, c = [1.5] }'),
    ],
)
def test_toml_values_read_back(value: object, text: str) -> None:
    assert toml_value(value) == text
    assert tomllib.loads(f"x = {text}")["x"] == value


def test_toml_value_refuses_none() -> None:
    with pytest.raises(TypeError, match="no TOML form"):
        toml_value(None)
