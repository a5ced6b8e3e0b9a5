"""Running the CLI as a user does: a real process, its output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m causalscope.daemon.cli ARGS`` in ``cwd``, ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "causalscope.daemon.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )
