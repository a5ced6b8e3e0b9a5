"""Where a session lives and what identifies its processing.

A session is a folder ``<store.directory>/<name>/`` holding ``<name>.duckdb`` (the store),
``micrographs/``, ``motion/``, ``thumbnails/``, ``spool/`` (exposures received from the frame
stream) and ``micrographs_ctf.star``. Without ``--session`` the name comes from the source
(the watched folder's name and a hash of its absolute path, or the stream's address), so a
restart on the same folder resumes the same session instead of processing everything again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from causalscope.config import Settings, settings_to_dict

__all__ = ["SessionPaths", "default_session_name", "params_hash", "software_version"]

#: Settings that change no result; everything else in these sections is in the hash.
# the running reconstructions and the scores read the exposures' results; they do not change
# them
_NOT_HASHED = {
    ("processing", "max_in_flight"),
    ("processing", "device"),
    ("processing", "reconstruction"),
    ("processing", "scoring"),
}
_HASHED_SECTIONS = ("microscope", "detector", "processing")


def software_version() -> str:
    """The installed causalscope version."""
    try:
        return metadata.version("causalscope")
    except metadata.PackageNotFoundError:
        return "unknown"


def params_hash(settings: Settings) -> str:
    """A short hash of every setting that changes an exposure's result.

    Results are stored per (exposure, stage, params_hash): a restart with the same settings
    finds its work done; changed processing settings make new results.
    """
    data = settings_to_dict(settings)
    hashed = {}
    for section in _HASHED_SECTIONS:
        values = dict(data[section])
        for sec, key in _NOT_HASHED:
            if sec == section:
                values.pop(key, None)
        hashed[section] = values
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _safe(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return name[:80] or "session"


def default_session_name(
    *, directory: Path | None = None, stream_address: str | None = None
) -> str:
    """A stable name for the source: ``<folder>-<hash of its path>`` or ``stream-<address>``."""
    if directory is not None:
        absolute = str(Path(directory).resolve())
        digest = hashlib.sha256(absolute.encode()).hexdigest()[:6]
        return f"{_safe(Path(absolute).name)}-{digest}"
    if stream_address is not None:
        return _safe(f"stream-{stream_address.split('://', 1)[-1]}")
    raise ValueError("a session name needs a directory or a stream address")


@dataclass(frozen=True)
class SessionPaths:
    """The files and folders of one session."""

    root: Path
    name: str

    @classmethod
    def under(cls, directory: Path, name: str) -> SessionPaths:
        """The session ``name`` inside the sessions folder ``directory``."""
        return cls(Path(directory) / name, name)

    @property
    def database(self) -> Path:
        """The session's DuckDB file."""
        return self.root / f"{self.name}.duckdb"

    @property
    def spool(self) -> Path:
        """Where the frame stream keeps the exposures it has received."""
        return self.root / "spool"

    @property
    def ctf_star(self) -> Path:
        """RELION's ``micrographs_ctf.star`` for this session."""
        return self.root / "micrographs_ctf.star"
