"""The label files (and 2D class selections) that the picker's finished fine-tuning rounds
were given, at their versions: kept beside the checkpoint, so that a restarted session reads
them again without running a round for them."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_judged", "write_judged"]


def read_judged(path: Path) -> dict[str, tuple[float, int]]:
    """The label versions an earlier run's rounds were given (empty if none or unreadable)."""
    import json

    try:
        stored = json.loads(path.read_text())
        return {str(k): (float(v[0]), int(v[1])) for k, v in stored.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}


def write_judged(path: Path, judged: dict[str, tuple[float, int]]) -> None:
    """Write ``judged`` (key: ``(mtime, size)``) to ``path`` atomically."""
    import json

    from causalscope.actors._checkpoint import write_atomically

    text = json.dumps({k: list(v) for k, v in sorted(judged.items())}, indent=1)
    write_atomically(path, text.encode())
