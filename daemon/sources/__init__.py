"""Exposure sources: the directory watcher and the ZeroMQ frame stream, feeding one queue."""

from causalscope.daemon.sources.events import GainFound, MovieReady, Rejected, SourceEvent
from causalscope.daemon.sources.stream import (
    FrameStreamReceiver,
    is_safe_exposure_id,
    stream_metadata,
)
from causalscope.daemon.sources.stream_sender import StreamFaults, send_exposure
from causalscope.daemon.sources.watcher import DirectoryWatcher

__all__ = [
    "DirectoryWatcher",
    "FrameStreamReceiver",
    "GainFound",
    "MovieReady",
    "Rejected",
    "SourceEvent",
    "StreamFaults",
    "is_safe_exposure_id",
    "send_exposure",
    "stream_metadata",
]
