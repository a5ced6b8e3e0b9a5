"""Fixtures for the settings tests: a clean environment and a helper to write TOML files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from causalscope.config.sources import ENV_PREFIX


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CAUSALSCOPE_ variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``text`` to ``tmp_path/name`` and return the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
