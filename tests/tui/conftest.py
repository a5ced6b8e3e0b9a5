"""Fixtures of the dashboard's tests: one recorded session, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from causalscope.tui.source import Snapshot
from tests.tui._session import recorded_snapshot


@pytest.fixture(scope="session")
def snapshot_session(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """The deterministic recorded session (its pictures in a temporary folder)."""
    folder: Path = tmp_path_factory.mktemp("recorded")
    return recorded_snapshot(folder)
