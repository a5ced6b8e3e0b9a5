"""The frame stream: a ZeroMQ PULL socket that assembles pushed frames into exposures.

Messages follow :mod:`daemon.frame_protocol` (start, frames, end per exposure). Each exposure is
assembled into one preallocated ``(n, h, w)`` array, spooled to ``spool_dir`` (a JSON record of
its start header, then the MRC movie, each written atomically) and only then emitted as a
:class:`MovieReady`; on start every complete spooled exposure is emitted again, so a crash loses
nothing (the scheduler's store de-duplicates). Bad input of any kind becomes a
:class:`Rejected` with a stable code; the receiver keeps receiving. The thread follows
LiberTEM-live's receivers: a stop event, ``poll()`` with a timeout, a bounded high-water mark,
``LINGER`` set before close, and the thread's exception re-raised by :meth:`check`.
How the start header's ``metadata`` becomes an ``AcquisitionMetadata``: :func:`stream_metadata`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zmq

from causalscope.config.acquisition import StreamSettings
from causalscope.daemon.frame_protocol import parse_header
from causalscope.daemon.sources._stream_checks import (
    check_header_values,
    is_safe_exposure_id,
    list_indices,
    memory_limit_bytes,
    stream_metadata,
)
from causalscope.daemon.sources.events import Rejected, SourceEvent
from causalscope.daemon.sources.spool import read_spooled, spool_exposure, spooled_records
from causalscope.models.errors import FormatError, InputError

__all__ = ["FrameStreamReceiver", "is_safe_exposure_id", "read_spooled", "stream_metadata"]

log = logging.getLogger(__name__)

_POLL_MS = 100
_DRAIN = 256  # messages handled per wake-up before timeouts and the stop event are checked
_REMEMBERED = 10_000  # closed exposure ids kept to recognise their late messages
_STATS = (
    "messages",
    "frames",
    "exposures",
    "rejected",
    "duplicates",
    "out_of_order",
    "discarded",
    "restored",
)

_Closed = Literal["emitted", "rejected"]


@dataclass(eq=False)
class _Exposure:
    """An open exposure: the start header and the frames placed so far."""

    header: dict[str, Any]
    frames: np.ndarray
    received: np.ndarray
    wire_dtype: np.dtype
    last_seen: float
    highest: int = -1
    duplicates: list[int] = field(default_factory=list)
    out_of_order: int = 0

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    def summary(self) -> str:
        return f"{int(self.received.sum())} of {self.n_frames} frames received"


class FrameStreamReceiver:
    """Receive frames on a PULL socket; put :class:`MovieReady` / :class:`Rejected` on ``events``.

    Parameters
    ----------
    settings
        Address, high-water mark, timeout, frame limit.
    events
        The owner's queue.
    spool_dir
        Where complete exposures are written (``<id>.json`` then ``<id>.mrc``); created.
    address
        Endpoint to bind instead of ``settings.address`` (``tcp://127.0.0.1:0``: a free port).
    clock
        Monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        settings: StreamSettings,
        events: queue.Queue[SourceEvent],
        *,
        spool_dir: Path,
        address: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._events = events
        self._spool = Path(spool_dir)
        self._address = address or settings.address
        self._clock = clock
        self._socket: zmq.Socket[bytes] | None = None
        self._endpoint: str | None = None
        self._open: dict[str, _Exposure] = {}
        self._closed: OrderedDict[str, _Closed] = OrderedDict()
        self._stats = dict.fromkeys(_STATS, 0)
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        # assembled exposures whose spooling failed (a full disk): kept, retried every second
        self._unspooled: list[tuple[str, dict[str, Any], np.ndarray, list[str]]] = []
        self._spool_error: str | None = None
        self._next_spool_s = 0.0

    # -- owner's side ------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The bound address, with the port the system chose for ``:0``."""
        if self._endpoint is None:
            raise RuntimeError("FrameStreamReceiver.endpoint is known only after start()")
        return self._endpoint

    @property
    def stats(self) -> dict[str, int]:
        """Counts so far: messages, frames (placed), exposures (emitted), rejected, duplicates,
        out_of_order, discarded (late messages of closed exposures), restored (from spool)."""
        with self._stats_lock:
            return dict(self._stats)

    def start(self) -> None:
        """Bind the socket and start the receiving thread; InputError if binding fails."""
        if self._thread is not None:
            raise RuntimeError("FrameStreamReceiver.start() called twice")
        self._spool.mkdir(parents=True, exist_ok=True)
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock: zmq.Socket[bytes] = context.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)  # before close: pending input is never waited for
        sock.setsockopt(zmq.RCVHWM, self._settings.high_water_mark)
        try:
            sock.bind(self._address)
        except zmq.ZMQError as error:
            sock.close()
            raise InputError(
                "Cannot bind frame receiver", f"{self._address!r}: {error.strerror}"
            ) from error
        self._endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        # the socket moves to the thread (a thread start is a full memory barrier) and is used
        # and closed only there
        self._socket = sock
        self._thread = threading.Thread(
            target=self._run, name=f"stream:{self._endpoint}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop receiving and wait up to ``timeout_s``; open exposures are reported incomplete.

        Does not raise the thread's error: call :meth:`check` for that.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "frame receiver %s did not stop within %.1f s", self._endpoint, timeout_s
                )

    def check(self) -> None:
        """Re-raise the exception that ended the receiving thread, if any."""
        if self._error is not None:
            raise self._error

    # -- receiving thread --------------------------------------------------------------------

    def _run(self) -> None:
        sock = self._socket
        assert sock is not None
        try:
            self._restore()
            while not self._stop.is_set():
                if sock.poll(_POLL_MS, zmq.POLLIN):
                    for _ in range(_DRAIN):
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle_safely(parts, self._clock())
                self._expire(self._clock())
                if self._unspooled and self._clock() >= self._next_spool_s:
                    self._spool_pending()
            for exposure_id, _, _, _ in self._unspooled:
                self._reject(
                    exposure_id,
                    "spool_failed",
                    f"exposure {exposure_id}: received complete, but the receiver stopped before "
                    f"it could be spooled ({self._spool_error}); its frames are not kept",
                )
            for exposure_id, exposure in list(self._open.items()):
                self._close_rejected(
                    exposure_id,
                    "incomplete_exposure",
                    f"exposure {exposure_id}: the receiver stopped with {exposure.summary()}",
                )
        except BaseException as error:
            self._error = error
            log.exception("frame receiver %s failed", self._endpoint)
        finally:
            sock.close(linger=0)

    def _handle_safely(self, parts: list[zmq.Frame], now: float) -> None:
        try:
            self._handle(parts, now)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError) as error:
            # a message we failed to foresee must not end the stream
            log.exception("frame receiver %s: unexpected message", self._endpoint)
            self._reject(None, "garbage_message", f"could not handle a message: {error!r:.200}")

    def _handle(self, parts: list[zmq.Frame], now: float) -> None:
        self._count("messages")
        try:
            header = parse_header(parts[0].bytes)
        except FormatError as error:
            self._reject(None, "garbage_message", str(error))
            return
        kind = header["type"]
        expected = 2 if kind == "frame" else 1
        exposure_id = header["exposure_id"]
        named = exposure_id if is_safe_exposure_id(exposure_id) else None
        if len(parts) != expected:
            self._reject(
                named,
                "garbage_message",
                f"a {kind} message of exposure {exposure_id!r:.80} has {len(parts)} parts; "
                f"expected {expected}",
            )
            return
        if named is None:
            self._reject(
                None,
                "garbage_message",
                f"exposure_id {exposure_id!r:.80} is not a safe file name (1-200 letters, "
                "digits, '.', '_', '-'; no leading dot)",
            )
            return
        problem = check_header_values(header)
        if problem is not None:
            self._reject(named, "garbage_message", f"{kind} message of {named}: {problem}")
            return
        if kind == "start":
            self._on_start(named, header, now)
        elif kind == "frame":
            self._on_frame(named, header, parts[1].buffer, now)
        else:
            self._on_end(named, header)

    def _on_start(self, exposure_id: str, header: dict[str, Any], now: float) -> None:
        previous = self._open.get(exposure_id)
        if previous is not None:
            self._close_rejected(
                exposure_id,
                "incomplete_exposure",
                f"exposure {exposure_id}: a second start arrived while it was open with "
                f"{previous.summary()}; the open one is dropped, the new one assembled",
            )
        if self._closed.get(exposure_id) == "emitted":
            self._reject(
                exposure_id,
                "duplicate_exposure",
                f"exposure {exposure_id} was already received and spooled; this second copy "
                "is ignored",
            )
            return
        n, h, w = header["n_frames"], header["height"], header["width"]
        limit = self._settings.max_exposure_frames
        if n > limit:
            self._close_rejected(
                exposure_id,
                "too_many_frames",
                f"exposure {exposure_id}: start declares {n} frames; at most {limit} are "
                "accepted (stream.max_exposure_frames)",
            )
            return
        dtype = np.dtype(header["dtype"])
        size = n * h * w * dtype.itemsize
        limit_bytes = memory_limit_bytes()
        try:
            if limit_bytes is not None and size > limit_bytes:
                raise MemoryError(f"{size / 2**30:.1f} GiB is over half this machine's memory")
            frames = np.empty((n, h, w), dtype=dtype)
        except (MemoryError, ValueError) as error:
            self._close_rejected(
                exposure_id,
                "too_many_frames",
                f"exposure {exposure_id}: cannot hold {n} frames of {h}x{w} {dtype} ({error})",
            )
            return
        self._closed.pop(exposure_id, None)
        self._open[exposure_id] = _Exposure(
            header=header,
            frames=frames,
            received=np.zeros(n, dtype=bool),
            wire_dtype=dtype.newbyteorder("<"),
            last_seen=now,
        )

    def _on_frame(
        self, exposure_id: str, header: dict[str, Any], data: memoryview, now: float
    ) -> None:
        exposure = self._open.get(exposure_id)
        index = header["index"]
        if exposure is None:
            self._unknown(exposure_id, f"frame {index}")
            return
        start = exposure.header
        h, w = start["height"], start["width"]
        got = (header["height"], header["width"], header["dtype"])
        if got != (h, w, start["dtype"]):
            self._close_rejected(
                exposure_id,
                "frame_shape_mismatch",
                f"frame {index} of exposure {exposure_id} is {got[0]}x{got[1]} {got[2]}; "
                f"start declared {h}x{w} {start['dtype']}",
            )
            return
        expected_bytes = h * w * exposure.wire_dtype.itemsize
        if data.nbytes != expected_bytes:
            self._close_rejected(
                exposure_id,
                "frame_shape_mismatch",
                f"frame {index} of exposure {exposure_id} has {data.nbytes} bytes; a {h}x{w} "
                f"{start['dtype']} frame has {expected_bytes}",
            )
            return
        if index >= exposure.n_frames:
            self._close_rejected(
                exposure_id,
                "too_many_frames",
                f"frame index {index} of exposure {exposure_id}, but start declared "
                f"{exposure.n_frames} frames (0..{exposure.n_frames - 1})",
            )
            return
        exposure.last_seen = now
        if exposure.received[index]:
            exposure.duplicates.append(index)
            self._count("duplicates")
            return
        if index < exposure.highest:
            exposure.out_of_order += 1
            self._count("out_of_order")
        exposure.frames[index] = np.frombuffer(data, dtype=exposure.wire_dtype).reshape(h, w)
        exposure.received[index] = True
        exposure.highest = max(exposure.highest, index)
        self._count("frames")

    def _on_end(self, exposure_id: str, header: dict[str, Any]) -> None:
        exposure = self._open.get(exposure_id)
        if exposure is None:
            self._unknown(exposure_id, "end")
            return
        sent, declared = header["n_frames"], exposure.n_frames
        if sent > declared:
            self._close_rejected(
                exposure_id,
                "too_many_frames",
                f"exposure {exposure_id}: end says {sent} frames were sent; start declared "
                f"{declared}",
            )
            return
        beyond = np.flatnonzero(exposure.received[sent:]) + sent
        if beyond.size:
            self._close_rejected(
                exposure_id,
                "too_many_frames",
                f"exposure {exposure_id}: frames {list_indices(beyond)} arrived but end says only "
                f"{sent} were sent",
            )
            return
        missing = np.flatnonzero(~exposure.received[:sent])
        if sent == 0 or missing.size:
            what = (
                f"frames {list_indices(missing)} of {sent} never arrived"
                if sent
                else "end says no frames were sent"
            )
            self._close_rejected(exposure_id, "missing_frames", f"exposure {exposure_id}: {what}")
            return
        del self._open[exposure_id]
        problems: list[str] = []
        if sent < declared:
            problems.append(f"start declared {declared} frames; end says {sent} were sent")
        if exposure.duplicates:
            problems.append(
                f"frames {list_indices(sorted(set(exposure.duplicates)))} arrived more than once "
                f"({len(exposure.duplicates)} extra copies ignored)"
            )
        if exposure.out_of_order:
            problems.append(
                f"{exposure.out_of_order} frames arrived out of order (placed by index)"
            )
        frames = exposure.frames if sent == declared else exposure.frames[:sent]
        self._complete(exposure_id, exposure.header, frames, problems)

    def _complete(
        self, exposure_id: str, header: dict[str, Any], frames: np.ndarray, problems: list[str]
    ) -> None:
        """Spool (JSON record, then MRC), then emit; while the spool cannot be written (a full
        disk), the exposure waits in memory, in order, and spooling is retried every second."""
        self._remember(exposure_id, "emitted")
        self._unspooled.append((exposure_id, header, frames, problems))
        self._spool_pending()

    def _spool_pending(self) -> None:
        while self._unspooled:
            exposure_id, header, frames, problems = self._unspooled[0]
            try:
                event = spool_exposure(
                    self._spool, exposure_id, header, frames, list(problems), self.endpoint
                )
            except InputError as error:
                if self._spool_error is None:  # said once, until spooling works again
                    log.warning(
                        "frame receiver %s: %s; the exposure is kept in memory and spooling is "
                        "retried every second (%d waiting)",
                        self._endpoint,
                        error.message,
                        len(self._unspooled),
                    )
                self._spool_error = error.message
                self._next_spool_s = self._clock() + 1.0
                return
            if self._spool_error is not None:
                log.warning("frame receiver %s: spooling works again", self._endpoint)
                self._spool_error = None
            self._unspooled.pop(0)
            self._count("exposures")
            self._put(event)

    def _restore(self) -> None:
        """Emit each complete spooled exposure (``<id>.json`` and ``<id>.mrc``) once."""
        for record_path in spooled_records(self._spool):
            exposure_id = record_path.stem
            if not is_safe_exposure_id(exposure_id):
                continue  # not a name this receiver writes
            movie = record_path.with_suffix(".mrc")
            try:
                event = read_spooled(movie, default_origin=self.endpoint)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
                self._reject(
                    exposure_id,
                    "unreadable_file",
                    f"spooled record {record_path} is unreadable ({error}); its movie {movie} "
                    "is not re-emitted",
                    origin=str(record_path),
                )
                continue
            self._remember(exposure_id, "emitted")
            self._count("restored")
            self._put(event)

    def _expire(self, now: float) -> None:
        timeout = self._settings.receive_timeout_s
        for exposure_id, exposure in list(self._open.items()):
            if now - exposure.last_seen > timeout:
                self._close_rejected(
                    exposure_id,
                    "incomplete_exposure",
                    f"exposure {exposure_id}: no message for {timeout:g} s with "
                    f"{exposure.summary()} (stream.receive_timeout_s)",
                )

    def _unknown(self, exposure_id: str, what: str) -> None:
        if exposure_id in self._closed:
            self._count("discarded")  # a late message of an exposure already reported
            return
        self._remember(exposure_id, "rejected")
        self._reject(
            exposure_id,
            "unknown_exposure",
            f"{what} of exposure {exposure_id} arrived but it was never started (or its start "
            "was lost); its messages are discarded until a new start",
        )

    def _close_rejected(self, exposure_id: str, code: str, reason: str) -> None:
        self._open.pop(exposure_id, None)
        self._remember(exposure_id, "rejected")
        self._reject(exposure_id, code, reason)

    def _remember(self, exposure_id: str, state: _Closed) -> None:
        self._closed[exposure_id] = state
        self._closed.move_to_end(exposure_id)
        while len(self._closed) > _REMEMBERED:
            self._closed.popitem(last=False)

    def _reject(
        self, exposure_id: str | None, code: str, reason: str, *, origin: str | None = None
    ) -> None:
        log.warning("frame stream %s: %s: %s", self._endpoint, code, reason)
        self._count("rejected")
        self._put(Rejected(exposure_id, origin or self.endpoint, code, reason))

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    def _put(self, event: SourceEvent) -> None:
        # a bounded queue must not wedge stop(): give up once stopping (the spool remains)
        while True:
            try:
                self._events.put(event, timeout=0.2)
                return
            except queue.Full:
                if self._stop.is_set():
                    return
