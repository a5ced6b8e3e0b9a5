"""What a source hands the scheduler: an exposure ready to process, one rejected with a reason,
or a gain reference found beside the movies.

Both sources (the directory watcher and the ZeroMQ frame stream) put these on one
``queue.Queue``; the scheduler records each exposure before it is processed, so a restart
neither loses nor redoes one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from causalscope.models.records import AcquisitionMetadata

__all__ = ["GainFound", "MovieReady", "Rejected", "SourceEvent"]

SourceKind = Literal["watcher", "stream"]


@dataclass(frozen=True)
class MovieReady:
    """A complete movie, ready to process.

    Parameters
    ----------
    exposure_id
        Unique within a session: the movie's file stem (watcher) or the stream's id.
    movie_path
        The movie on disk. The stream spools each assembled exposure to an MRC file first, so a
        restart can process what was received before the crash.
    source
        Which source emitted it.
    metadata_path
        EPU XML or SerialEM mdoc paired with the movie, when one was found.
    frames
        The frames in memory when the source already has them (the stream), else None.
    metadata
        Metadata the source already parsed (the stream's start header), else None.
    pixel_size_angstrom
        The frames' pixel size when the source knows it.
    problems
        Non-fatal irregularities the source saw (duplicated or out-of-order frames).
    ready_at
        ``time.monotonic()`` when the source decided the movie was complete: latency starts here.
    """

    exposure_id: str
    movie_path: Path
    source: SourceKind
    metadata_path: Path | None = None
    frames: np.ndarray | None = field(default=None, repr=False, compare=False)
    metadata: AcquisitionMetadata | None = None
    pixel_size_angstrom: float | None = None
    problems: tuple[str, ...] = ()
    ready_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Rejected:
    """Input a source could not turn into an exposure; it goes to quarantine with its reason.

    Parameters
    ----------
    exposure_id
        The exposure concerned, when the input named one.
    origin
        The file path or stream address it came from.
    code
        Stable machine-readable reason: ``garbage_message``, ``unknown_exposure``,
        ``missing_frames``, ``incomplete_exposure``, ``too_many_frames``,
        ``frame_shape_mismatch``, ``unreadable_file``, ``spool_failed``, ...
    reason
        Human-readable: names the file or exposure and the value that was wrong.
    """

    exposure_id: str | None
    origin: str
    code: str
    reason: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class GainFound:
    """A gain reference in the watched folder (``watcher.gain_patterns``), complete on disk.

    It is never an exposure; the scheduler's :class:`~daemon.calibration.GainChoice` decides
    whether it becomes the session's gain.
    """

    path: Path
    at: float = field(default_factory=time.time)


SourceEvent = MovieReady | Rejected | GainFound
