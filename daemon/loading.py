"""Reading the movie of a recorded exposure, on the scheduler's loader threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from causalscope.daemon.sources.events import MovieReady

if TYPE_CHECKING:
    from causalscope.config import Settings

__all__ = ["Loaded", "load_event"]


@dataclass
class Loaded:
    """A movie's frames and what is known about them, ready to hand to a worker."""

    frames: Any
    metadata: Any
    pixel_size_angstrom: float | None
    upsampling: int


def load_event(event: MovieReady, settings: Settings) -> Loaded:
    """The frames and metadata of ``event``: from memory (the stream) or read from its file.

    Raises
    ------
    CausalscopeError
        The movie or its metadata is missing, unreadable or corrupt (the message names it).
    """
    if event.frames is not None:
        return Loaded(event.frames, event.metadata, event.pixel_size_angstrom, 1)
    from causalscope.daemon.exposures import load_movie

    movie = load_movie(event.movie_path, settings, metadata_path=event.metadata_path)
    if event.source == "stream":
        # a spooled exposure (after a restart): what the stream said, from the spool's
        # record, not the MRC header (which holds 1.0 when the sender gave no pixel size)
        from causalscope.daemon.sources.spool import read_spooled

        spooled = read_spooled(event.movie_path)
        return Loaded(movie.frames, spooled.metadata, spooled.pixel_size_angstrom, 1)
    return Loaded(movie.frames, movie.metadata, movie.pixel_size_angstrom, movie.upsampling)
