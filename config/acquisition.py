"""Settings of the two exposure sources: the directory watcher and the ZeroMQ frame stream."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import Field, field_validator

from causalscope.config._common import OptionalPath, Section, ZmqAddress

__all__ = ["FileKind", "StreamSettings", "WatcherSettings"]

#: what a watched file is, by its name
FileKind = Literal["gain", "movie", "metadata"]


class WatcherSettings(Section):
    """The directory watcher: movies, metadata and gain references, and when a file is complete."""

    directory: OptionalPath = Field(
        None,
        description="Folder the microscope writes into; '' = given on the command line.",
        examples=["/data/epu/session01"],
    )
    movie_patterns: tuple[str, ...] = Field(
        ("*.tiff", "*.tif", "*.mrc", "*.mrcs", "*.eer"),
        min_length=1,
        description="Glob patterns of movie file names.",
    )
    metadata_patterns: tuple[str, ...] = Field(
        ("*.xml", "*.mdoc"),
        description="Glob patterns of metadata files (EPU XML, SerialEM .mdoc).",
    )
    gain_patterns: tuple[str, ...] = Field(
        (
            "*gain*.mrc",
            "*.gain",
            "gain*.tif",
            "gain*.tiff",
            "countref*.mrc",
            "superref*.mrc",
        ),
        description=(
            "Glob patterns (any case) of gain references written beside the movies (Falcon "
            "EER .gain, Gatan gain TIFF, SerialEM CountRef/SuperRef converted to MRC); checked "
            "before movie_patterns. Such a file is never processed as a movie; it is the gain "
            "when detector.gain_reference is unset and its shape matches the movies."
        ),
    )
    recursive: bool = Field(
        True, description="Watch sub-folders too (EPU writes into GridSquare_*/Data/)."
    )
    settle_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="A file is complete once its size and mtime have not changed for this long.",
    )
    polling: bool = Field(
        False, description="Poll the folder instead of using inotify (needed on NFS/SMB mounts)."
    )
    poll_interval_s: float = Field(
        2.0, gt=0, le=600, description="Seconds between scans when polling."
    )
    metadata_wait_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description=(
            "How long a settled movie waits for its EPU XML or mdoc before it is processed "
            "without one."
        ),
    )

    @field_validator("movie_patterns", "metadata_patterns", "gain_patterns")
    @classmethod
    def _patterns_not_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not pattern.strip() for pattern in value):
            raise ValueError(f"empty pattern in {list(value)}")
        return value

    def file_kind(self, name: str) -> FileKind | None:
        """What a file named ``name`` is by the patterns (any case): a gain reference (checked
        first), a movie, a metadata file, or None."""
        lowered = name.lower()
        kinds: tuple[tuple[FileKind, tuple[str, ...]], ...] = (
            ("gain", self.gain_patterns),
            ("movie", self.movie_patterns),
            ("metadata", self.metadata_patterns),
        )
        for kind, patterns in kinds:
            if any(fnmatchcase(lowered, pattern.lower()) for pattern in patterns):
                return kind
        return None


class StreamSettings(Section):
    """The frame stream: a ZeroMQ PULL socket that receives frames from a detector or simulator."""

    address: ZmqAddress = Field(
        "tcp://127.0.0.1:5555", description="Endpoint the frame receiver binds (PULL)."
    )
    high_water_mark: int = Field(
        1000, ge=1, le=1_000_000, description="Frames queued in ZeroMQ before senders block."
    )
    receive_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="An open exposure with no new frame for this long is reported incomplete.",
    )
    max_exposure_frames: int = Field(
        2000, ge=1, le=100_000, description="Frames accepted per exposure; more is an error."
    )
