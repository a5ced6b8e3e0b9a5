"""The wheel as a user installs it: built from a copy of the source, installed non-editable into
a scratch environment that borrows this environment's dependencies (no download), and run from
a folder outside the source tree, where only the installed package can be imported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
APP_SCRIPT = Path(__file__).with_name("installed_app.py")
_SKIP = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*_cache", "sessions"
)


def _copy_source(dest: Path) -> Path:
    source = dest / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_SKIP)
    return source


def _build_wheel(source: Path, out: Path) -> Path:
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            *("--no-index", "-w", str(out), str(source)),
        ],
        check=True,
        cwd=out,
    )
    (wheel,) = out.glob("causalscope-*.whl")
    return wheel


def _scratch_env(folder: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed; returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    bin_dir = folder / "bin"
    scratch_python = bin_dir / "python"
    site = subprocess.run(
        [scratch_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # this environment's dependencies, as a plain path: its .pth files (the editable install
    # of the source tree among them) are not run, so causalscope comes from the wheel only
    Path(site, "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(scratch_python), "install", "-q"),
            *("--no-deps", "--no-index", "--ignore-installed", str(wheel)),
        ],
        check=True,
    )
    return bin_dir


def _run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the scratch environment's bin folder)."""
    work = tmp_path_factory.mktemp("install")
    wheel = _build_wheel(_copy_source(work), work)
    return wheel, _scratch_env(work / "env", wheel)


def test_the_wheel_holds_one_package_with_its_data(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"causalscope"}
    for data in (
        "causalscope/tui/app.tcss",
        "causalscope/models/data/n2n_default.pt",
        "causalscope/config/presets/krios-k3.toml",
    ):
        assert data in names, data


def test_the_installed_commands_run(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, bin_dir = installed
    shown = _run([bin_dir / "causalscope", "--help"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Live cryo-EM processing" in shown.stdout
    presets = _run([bin_dir / "causalscope", "config", "presets"], tmp_path)
    assert presets.returncode == 0, presets.stderr
    assert "krios-k3" in presets.stdout
    # the shipped denoiser's weights load from the installed package data
    code = "from causalscope.models.denoise import default_model; print(default_model().config())"
    weights = _run([bin_dir / "python", "-c", code], tmp_path)
    assert weights.returncode == 0, weights.stderr[-2000:]
    assert "channels" in weights.stdout
    # nothing but causalscope is installed at the top level
    for name in ("daemon", "actors", "models", "tui", "config"):
        probe = _run([bin_dir / "python", "-c", f"import {name}"], tmp_path)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, name


def test_the_installed_dashboard_starts_with_its_stylesheet(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, bin_dir = installed
    ran = _run([bin_dir / "python", APP_SCRIPT, tmp_path], tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "dashboard ok" in ran.stdout


def test_a_wheel_without_the_stylesheet_fails_the_dashboard_check(tmp_path: Path) -> None:
    source = _copy_source(tmp_path)
    pyproject = source / "pyproject.toml"
    text = pyproject.read_text()
    line = '"causalscope.tui" = ["*.tcss"]\n'
    assert line in text
    pyproject.write_text(text.replace(line, ""))
    wheel = _build_wheel(source, tmp_path)
    assert "causalscope/tui/app.tcss" not in zipfile.ZipFile(wheel).namelist()
    bin_dir = _scratch_env(tmp_path / "env", wheel)
    ran = _run([bin_dir / "python", APP_SCRIPT, tmp_path], tmp_path)
    assert ran.returncode != 0
    assert "StylesheetError: unable to read CSS file" in ran.stderr
    assert "site-packages/causalscope/tui/app.tcss" in ran.stderr
