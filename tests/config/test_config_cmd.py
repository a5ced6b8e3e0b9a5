"""`causalscope config`: default, show, presets and check."""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from causalscope.config import default_toml, list_presets, load_settings
from causalscope.daemon.commands import config_cmd
from causalscope.models.errors import ConfigError, InputError

WriteToml = Callable[[str, str], Path]


def _run(argv: list[str], *, config: str | None = None, preset: str | None = None) -> int:
    parser = argparse.ArgumentParser()
    config_cmd.add_arguments(parser)
    args = parser.parse_args(argv)
    args.config, args.preset = config, preset  # the CLI's global flags
    return config_cmd.run(args)


def test_help_line() -> None:
    assert (config_cmd.__doc__ or "").splitlines()[0] == "Show, check and write settings."


def test_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["default"]) == 0
    assert capsys.readouterr().out == default_toml()


def test_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_presets()
    k3 = next(line for line in lines if line.startswith("krios-k3 "))
    assert "Gatan K3" in k3


def test_show_toml_with_preset_and_file(
    capsys: pytest.CaptureFixture[str], write_toml: WriteToml
) -> None:
    path = write_toml("site.toml", "[processing]\nmax_in_flight = 2\n")
    assert _run(["show"], config=str(path), preset="glacios-falcon4") == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["microscope"]["voltage_kv"] == 200.0
    assert shown["detector"]["eer_grouping"] == 40
    assert shown["processing"]["max_in_flight"] == 2


def test_show_json_includes_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAUSALSCOPE_SERVE__PORT", "8123")
    assert _run(["show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["serve"]["port"] == 8123
    assert shown["detector"]["gain_reference"] is None


def test_check_ok(capsys: pytest.CaptureFixture[str], write_toml: WriteToml) -> None:
    path = write_toml("ok.toml", "[microscope]\nvoltage_kv = 200\n")
    assert _run(["check", str(path)]) == 0
    assert capsys.readouterr().out == "ok\n"
    assert load_settings(path).microscope.voltage_kv == 200.0


def test_check_bad_file(write_toml: WriteToml) -> None:
    path = write_toml("bad.toml", "[microscope]\nvoltage_kv = 300000\n")
    with pytest.raises(ConfigError, match=r"microscope\.voltage_kv = 300000 in .*bad\.toml"):
        _run(["check", str(path)])


def test_check_without_file() -> None:
    with pytest.raises(InputError, match="No file to check"):
        _run(["check"])


def test_cli_reports_config_errors_without_traceback(
    capsys: pytest.CaptureFixture[str], write_toml: WriteToml
) -> None:
    from causalscope.daemon.cli import main

    path = write_toml("bad.toml", "[microscope]\nvoltage_kv = 300000\n")
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("causalscope: error: Invalid setting\n")
    assert f"microscope.voltage_kv = 300000 in {path}" in err
    assert "Traceback" not in err
    assert main(["--preset", "krios-k3", "config", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["microscope"]["pixel_size_angstrom"] == 0.83
