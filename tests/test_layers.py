"""The import contracts in pyproject.toml ([tool.importlinter]): they hold on the package, and
they are real: a copy of the package with one forbidden import breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
PARTS = ("daemon", "actors", "models", "tui", "config")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(cwd / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_package(dest: Path) -> Path:
    """The package as plain folders (no links back to the source tree) and the contracts."""
    package = dest / "causalscope"
    package.mkdir()
    shutil.copy(ROOT / "causalscope" / "__init__.py", package)
    for part in PARTS:
        shutil.copytree(
            ROOT / part, package / part, ignore=shutil.ignore_patterns("__pycache__", "data")
        )
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert contracts["contracts"], "no import contracts in pyproject.toml"
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return package


def test_the_package_keeps_its_import_contracts() -> None:
    ran = _lint(ROOT)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "BROKEN" not in ran.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("models/_bad.py", "from causalscope.daemon import cli\n", "daemon core -> actors"),
        ("models/_bad.py", "from causalscope import config\n", "models import nothing"),
        ("actors/_bad.py", "from causalscope.daemon import scheduler\n", "daemon core -> actors"),
        ("config/_bad.py", "from causalscope.tui import app\n", "settings depend on"),
        ("tui/_bad.py", "from causalscope.daemon import live\n", "the dashboard reaches"),
        ("tui/_bad.py", "import torch\n", "the dashboard and its client load no"),
        (
            "daemon/client/_bad.py",
            "from causalscope.daemon.store import schema\n",
            "the dashboard and",
        ),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    package = _copy_package(tmp_path)
    assert _lint(tmp_path).returncode == 0  # the copy alone keeps them
    (package / module).write_text(f'"""A forbidden import."""\n\n{line}')
    ran = _lint(tmp_path)
    assert ran.returncode != 0
    broken = [row for row in ran.stdout.splitlines() if " BROKEN" in row]
    assert any(row.startswith(contract) for row in broken), ran.stdout[-2000:]
    assert f"causalscope.{module[:-3].replace('/', '.')}" in ran.stdout
