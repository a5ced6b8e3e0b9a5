"""The CLI as a user meets it: real processes, clear errors, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from causalscope.daemon import formats
from tests.daemon.cli_run import run_cli

_run = run_cli


def _assert_clear_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("causalscope: error: ")
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_config_with_wrong_type_and_wrong_unit(tmp_path: Path) -> None:
    bad_type = tmp_path / "bad_type.toml"
    bad_type.write_text('[microscope]\nvoltage_kv = "three hundred"\n')
    _assert_clear_error(
        _run("--config", str(bad_type), "config", "show", cwd=tmp_path),
        "bad_type.toml",
        "microscope.voltage_kv",
        "three hundred",
    )
    bad_unit = tmp_path / "bad_unit.toml"
    bad_unit.write_text("[microscope]\nvoltage_kv = 300000\n")
    _assert_clear_error(
        _run("--config", str(bad_unit), "simulate", "--out", "x", cwd=tmp_path),
        "bad_unit.toml",
        "voltage_kv",
        "300000",
    )


def test_a_moved_setting_is_one_plain_warning_line(tmp_path: Path) -> None:
    old = tmp_path / "old.toml"
    old.write_text("[tui]\nice_thickness_nm = 60\n")
    result = _run("--config", str(old), "config", "show", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"causalscope: warning: tui.ice_thickness_nm = 60 in {old}: this setting has moved and "
        "is used as alerts.ice_thickness_nm; write it under [alerts] instead"
    ]


def test_truncated_mrc(tmp_path: Path) -> None:
    movie = tmp_path / "movie.mrc"
    formats.write_mrc_movie(movie, np.ones((4, 64, 64), np.int8), pixel_size_angstrom=1.0)
    truncated = tmp_path / "truncated.mrc"
    truncated.write_bytes(movie.read_bytes()[:5000])
    _assert_clear_error(_run("inspect", str(truncated), cwd=tmp_path), "truncated.mrc", "5000")
    ok = _run("inspect", str(movie), cwd=tmp_path)
    assert ok.returncode == 0 and "4 frames of 64 x 64 px" in ok.stdout


def test_tiff_with_no_frames(tmp_path: Path) -> None:
    empty = tmp_path / "empty.tiff"
    empty.write_bytes(b"II*\x00\x08\x00\x00\x00\x00\x00")  # a header and an empty directory
    _assert_clear_error(_run("inspect", str(empty), cwd=tmp_path), "empty.tiff")


def test_xml_that_is_not_epu(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_text('<?xml version="1.0"?><settings><voltage>300</voltage></settings>')
    _assert_clear_error(_run("inspect", str(other), cwd=tmp_path), "other.xml", "EPU")


def test_missing_structure_file(tmp_path: Path) -> None:
    _assert_clear_error(
        _run("simulate", "--out", "x", "--structure", "nope.pdb", cwd=tmp_path), "nope.pdb"
    )


@pytest.mark.parametrize("command", ["demo", "simulate", "inspect", "config"])
def test_every_subcommand_has_help(command: str, tmp_path: Path) -> None:
    result = _run(command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage: causalscope" in result.stdout
