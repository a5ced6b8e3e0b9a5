"""Where the novelty index lives: the settings' folder, else the user's data folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_index_folder"]


def default_index_folder(configured: Path | None) -> Path:
    """``configured``, else ``$XDG_DATA_HOME/causalscope/novelty-index`` (by default under
    ``~/.local/share``)."""
    if configured is not None:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "causalscope" / "novelty-index"
