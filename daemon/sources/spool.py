"""The frame stream's spool: each assembled exposure on disk before it is emitted.

An exposure is spooled as ``<id>.json`` (its start header, pixel size, problems, origin) and then
``<id>.mrc`` (its frames), each written atomically, so a crash leaves either a complete pair or
no movie; on start the receiver emits every complete pair again (:func:`spooled_records`,
:func:`read_spooled`), and a restarted scheduler reads a spooled exposure's metadata from its
record rather than from the MRC header.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from causalscope.daemon.formats import write_mrc_movie
from causalscope.daemon.sources._stream_checks import stream_metadata
from causalscope.daemon.sources.events import MovieReady
from causalscope.models.errors import InputError

__all__ = ["read_spooled", "spool_exposure", "spooled_records"]


def spool_exposure(
    spool: Path,
    exposure_id: str,
    header: dict[str, Any],
    frames: np.ndarray,
    problems: list[str],
    origin: str,
) -> MovieReady:
    """Write an assembled exposure to ``spool`` (JSON record, then MRC) and return its event.

    ``problems`` gets what the start header's metadata dropped and a missing pixel size.

    Raises
    ------
    InputError
        The spool folder cannot be written (the message names the file).
    """
    metadata, dropped = stream_metadata(header, origin=origin)
    problems.extend(dropped)
    pixel_size = header.get("pixel_size_angstrom")
    if pixel_size is None and metadata is not None:
        pixel_size = metadata.pixel_size_angstrom
    if pixel_size is None:
        problems.append("pixel size unknown (not in the start header); the spooled MRC says 1.0")
    record = {
        "exposure_id": exposure_id,
        "origin": origin,
        "n_frames": int(frames.shape[0]),
        "pixel_size_angstrom": pixel_size,
        "problems": problems,
        "spooled_at": datetime.now(UTC).isoformat(),
        "start": header,
    }
    movie = spool / f"{exposure_id}.mrc"
    try:
        _write_json(movie.with_suffix(".json"), record)
        write_mrc_movie(movie, frames, pixel_size_angstrom=pixel_size or 1.0)
    except OSError as error:
        raise InputError(
            "Cannot spool exposure",
            f"{movie}: {error.strerror or error} (stream spool folder {spool})",
            path=movie,
        ) from error
    return MovieReady(
        exposure_id,
        movie,
        "stream",
        frames=frames,
        metadata=metadata,
        pixel_size_angstrom=pixel_size,
        problems=tuple(problems),
    )


def spooled_records(spool: Path) -> list[Path]:
    """The ``<id>.json`` records in ``spool`` that have their ``<id>.mrc``, oldest first."""
    records = [
        p
        for p in spool.glob("*.json")
        if not p.name.startswith(".") and p.with_suffix(".mrc").is_file()
    ]
    records.sort(key=lambda p: (_mtime_ns(p), p.name))
    return records


def read_spooled(movie: Path, *, default_origin: str = "") -> MovieReady:
    """The event of a spooled exposure, from ``<id>.json`` beside its ``<id>.mrc``.

    Raises OSError, ValueError, KeyError or TypeError when the record is unreadable.
    """
    record_path = movie.with_suffix(".json")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    header = record["start"]
    pixel_size = record.get("pixel_size_angstrom")
    problems = tuple(str(p) for p in record.get("problems", ()))
    if not isinstance(header, dict) or not (
        pixel_size is None or isinstance(pixel_size, int | float)
    ):
        raise ValueError("'start' must be an object, 'pixel_size_angstrom' a number")
    origin = str(record.get("origin") or default_origin)
    metadata, _ = stream_metadata(header, origin=origin)
    return MovieReady(
        movie.stem,
        movie,
        "stream",
        metadata=metadata,
        pixel_size_angstrom=None if pixel_size is None else float(pixel_size),
        problems=problems,
    )


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (hidden temporary, then rename)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
