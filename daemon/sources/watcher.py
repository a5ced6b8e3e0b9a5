"""The directory watcher: record, settle, emit.

The watchdog handler only stamps ``path -> clock()`` under a lock; a loop thread takes the
stamps, follows each candidate file's size and mtime, and emits a movie once both have been
still for ``settings.settle_s``, paired with its EPU XML or SerialEM mdoc when that is there
(waiting up to ``settings.metadata_wait_s`` for it). The pattern is Murfey's
``client/watchdir.py``; inotify does not fire on NFS/SMB mounts, so ``settings.polling`` swaps
in watchdog's polling observer.

A gain reference beside the movies (``settings.gain_patterns``, checked before the movie
patterns) is never a movie: once settled it is emitted as a :class:`GainFound`, and
:attr:`DirectoryWatcher.gain_pending` tells the scheduler to wait for it before it fixes the
session's calibration.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from causalscope.config.acquisition import FileKind, WatcherSettings
from causalscope.daemon import exposures
from causalscope.daemon.sources.events import GainFound, MovieReady, Rejected, SourceEvent
from causalscope.models.errors import InputError

# watchdog's inotify observer re-registers its own callback when a new folder appears under a
# recursive watch and warns that it overwrote it (the same callback): noise on the operator's
# terminal with every new grid square, nothing to act on
warnings.filterwarnings(
    "ignore", message=r"Callback with id '\d+' already exists for watch", category=RuntimeWarning
)

__all__ = ["DirectoryWatcher"]

log = logging.getLogger(__name__)

# inotify's "opened" and "closed without writing" fire on every read (ours included): ignored
_STAMPED_EVENTS = frozenset({"created", "modified", "moved", "closed"})
_MAX_TICK_S = 0.2


@dataclass
class _Tracked:
    """A candidate file the loop is waiting on: its last (size, mtime), when to look again and
    when it was first seen."""

    kind: FileKind
    due: float
    snapshot: tuple[int, int] | None = None
    since: float = 0.0


class _Stamper(FileSystemEventHandler):
    """The watchdog handler: stamps paths, nothing else (it runs on the observer's thread)."""

    def __init__(self, watcher: DirectoryWatcher) -> None:
        super().__init__()
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _STAMPED_EVENTS:
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        if not raw:
            return
        self._watcher._stamp(
            Path(os.fsdecode(raw)), is_dir=event.is_directory, kind=event.event_type
        )


class DirectoryWatcher:
    """Watch a folder for movies and their metadata; put :class:`MovieReady` on ``events``.

    Parameters
    ----------
    directory
        The folder the microscope writes into; must exist.
    settings
        Patterns, recursion, settle time, polling, metadata wait.
    events
        The owner's queue; :class:`MovieReady`, :class:`Rejected` and :class:`GainFound` go
        there.
    ignore
        Folders whose contents are never emitted (e.g. the frame stream's spool, outputs).
    clock
        Monotonic seconds; injectable for tests.

    Notes
    -----
    Each movie is emitted at most once per watcher: ``exposure_id`` is its file stem. Hidden
    files and anything in a hidden folder are ignored (atomic writers use ``.name.part``
    temporaries). A file that vanishes before it settles is dropped silently; a zero-byte movie
    is emitted (reading it fails downstream, which quarantines it with the reason).
    """

    def __init__(
        self,
        directory: Path,
        settings: WatcherSettings,
        events: queue.Queue[SourceEvent],
        *,
        ignore: Sequence[Path] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = Path(directory).absolute()
        self._settings = settings
        self._events = events
        self._clock = clock
        folders = [Path(p).absolute() for p in ignore]
        self._ignore = tuple(dict.fromkeys([*folders, *(p.resolve() for p in folders)]))
        # a gain file still changing after this long does not hold the calibration any more
        self._gain_hold_s = settings.settle_s + settings.metadata_wait_s
        self._tick_s = min(_MAX_TICK_S, settings.poll_interval_s)

        self._lock = threading.Lock()
        self._stamps: dict[Path, float] = {}  # handler -> loop, under the lock
        self._new_dirs: set[Path] = set()  # folders created or moved in: scan them
        self._busy = True  # the loop has files to settle or movies waiting (under the lock)
        self._scanned = False
        self._gain_pending = True  # under the lock: see gain_pending

        self._tracked: dict[Path, _Tracked] = {}  # loop thread only
        self._waiting: dict[Path, float] = {}  # settled movie -> metadata deadline
        self._settled_metadata: set[Path] = set()
        self._emitted: dict[str, Path] = {}  # exposure_id -> movie
        self._done: set[Path] = set()  # movies emitted or rejected: never again

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None
        self._error: BaseException | None = None

    # -- owner's side ------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        """The watched folder (absolute)."""
        return self._directory

    @property
    def idle(self) -> bool:
        """True once the initial scan is done and nothing is waiting to settle or for metadata."""
        with self._lock:
            return self._scanned and not self._busy and not self._stamps and not self._new_dirs

    @property
    def gain_pending(self) -> bool:
        """True until the files present at start have been looked at, and while a gain
        reference is settling (for at most ``settle_s + metadata_wait_s`` from when it was
        first seen). Once False, every gain reference seen so far is on the queue."""
        with self._lock:
            return self._gain_pending

    def start(self) -> None:
        """Start the observer and the loop thread; InputError if the folder does not exist."""
        if self._thread is not None:
            raise RuntimeError("DirectoryWatcher.start() called twice")
        if not self._directory.is_dir():
            raise InputError(
                "Watched folder not found",
                f"{self._directory} does not exist or is not a folder",
                path=self._directory,
            )
        settings = self._settings
        observer: BaseObserver = (
            PollingObserver(timeout=settings.poll_interval_s) if settings.polling else Observer()
        )
        observer.schedule(_Stamper(self), str(self._directory), recursive=settings.recursive)
        try:
            observer.start()
        except OSError as error:
            raise InputError(
                "Cannot watch folder",
                f"{self._directory}: {error}; on network mounts or when the inotify watch limit "
                "is reached, set watcher.polling = true",
                path=self._directory,
            ) from error
        self._observer = observer
        # the scan runs in the loop thread after the observer started: nothing falls between
        self._thread = threading.Thread(
            target=self._run, name=f"watcher:{self._directory.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the observer and the loop, waiting up to ``timeout_s`` for each.

        Does not raise the loop's error: call :meth:`check` for that.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                log.warning("watcher of %s did not stop within %.1f s", self._directory, timeout_s)

    def check(self) -> None:
        """Re-raise the exception that ended the loop thread (or the handler), if any."""
        if self._error is not None:
            raise self._error

    # -- observer's thread -------------------------------------------------------------------

    def _stamp(self, path: Path, *, is_dir: bool, kind: str) -> None:
        try:
            now = self._clock()
            with self._lock:
                if not is_dir:
                    self._stamps[path] = now
                elif kind in ("created", "moved"):
                    self._new_dirs.add(path)
        except Exception as error:  # never kill the observer's thread; report to the owner
            self._error = self._error or error
            self._stop.set()

    # -- loop thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            found = self._scan(self._directory)
            with self._lock:
                for path in found:
                    self._stamps.setdefault(path, self._clock())
                self._scanned = True
            while not self._stop.is_set():
                self._tick()
                self._stop.wait(self._tick_s)
        except BaseException as error:
            self._error = error
            log.exception("watcher of %s failed", self._directory)

    def _tick(self) -> None:
        if self._observer is not None and not self._observer.is_alive():
            raise InputError(
                "Watcher stopped",
                f"the file-system observer of {self._directory} stopped unexpectedly",
                path=self._directory,
            )
        if not self._directory.is_dir():
            raise InputError(
                "Watched folder vanished",
                f"{self._directory} no longer exists (removed or unmounted?)",
                path=self._directory,
            )
        with self._lock:
            stamps, self._stamps = self._stamps, {}
            new_dirs, self._new_dirs = self._new_dirs, set()
            if stamps or new_dirs:
                self._busy = True
        now = self._clock()
        for folder in new_dirs:
            for path in self._scan(folder):
                stamps.setdefault(path, now)
        for path, stamped in stamps.items():
            self._note(path, stamped, now)
        self._settle(now)
        self._pair(now)
        settling = any(
            t.kind == "gain" and now - t.since < self._gain_hold_s for t in self._tracked.values()
        )
        with self._lock:
            self._busy = bool(self._tracked or self._waiting)
            self._gain_pending = settling  # after this tick's GainFound events were queued

    def _scan(self, folder: Path) -> list[Path]:
        """Candidate files under ``folder`` (recursively when configured), pruning hidden and
        ignored folders."""
        if self._excluded(folder):
            return []
        found: list[Path] = []
        for root, dirs, files in os.walk(folder):
            base = Path(root)
            found.extend(base / name for name in files if self._kind(base / name) is not None)
            if self._settings.recursive:
                dirs[:] = [d for d in dirs if not d.startswith(".") and not self._ignored(base / d)]
            else:
                dirs[:] = []
        return found

    def _excluded(self, path: Path) -> bool:
        """Outside the watched tree, hidden, in a hidden folder, or in an ignored folder."""
        try:
            relative = path.relative_to(self._directory)
        except ValueError:
            return True
        if any(part.startswith(".") for part in relative.parts):
            return True
        if not self._settings.recursive and len(relative.parts) > 1:
            return True
        return self._ignored(path)

    def _ignored(self, path: Path) -> bool:
        return any(path.is_relative_to(folder) for folder in self._ignore)

    def _kind(self, path: Path) -> FileKind | None:
        if self._excluded(path):
            return None
        return self._settings.file_kind(path.name)

    def _note(self, path: Path, stamped: float, now: float) -> None:
        """Start following a file, or push back its settle time after an event."""
        tracked = self._tracked.get(path)
        if tracked is not None:
            tracked.due = max(tracked.due, stamped + self._settings.settle_s)
            return
        if path in self._waiting or path in self._done:
            return
        kind = self._kind(path)
        if kind is not None:
            self._tracked[path] = _Tracked(kind, due=now, since=now)  # first look: this tick
            self._settled_metadata.discard(path)  # rewritten: wait for it to settle again

    def _settle(self, now: float) -> None:
        """Look at each file that is due; a file unchanged since the last look has settled."""
        for path, tracked in list(self._tracked.items()):
            if tracked.due > now:
                continue
            try:
                info = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                del self._tracked[path]  # moved or deleted before it settled (EPU moves files)
                continue
            except OSError as error:
                del self._tracked[path]
                if tracked.kind == "movie":
                    self._done.add(path)
                    self._put(
                        Rejected(
                            path.stem,
                            str(path),
                            "unreadable_file",
                            f"cannot stat {path}: {error.strerror or error}",
                        )
                    )
                continue
            if not stat.S_ISREG(info.st_mode):
                del self._tracked[path]
                continue
            snapshot = (info.st_size, info.st_mtime_ns)
            if snapshot != tracked.snapshot:
                tracked.snapshot = snapshot
                tracked.due = now + self._settings.settle_s
                continue
            del self._tracked[path]
            if tracked.kind == "movie":
                self._waiting[path] = now + self._settings.metadata_wait_s
            elif tracked.kind == "gain":
                self._done.add(path)
                self._put(GainFound(path))
            else:
                self._settled_metadata.add(path)

    def _pair(self, now: float) -> None:
        """Emit each settled movie whose metadata has settled too, or whose wait is over."""
        for movie, deadline in list(self._waiting.items()):
            metadata = self._metadata(movie)
            if metadata is None and now < deadline:
                continue
            del self._waiting[movie]
            self._emit(movie, metadata)

    def _metadata(self, movie: Path) -> Path | None:
        """The movie's metadata file when it exists, matches the patterns and has settled."""
        if not self._settings.metadata_patterns:
            return None
        found = exposures.find_metadata(movie)
        # only a file this loop has seen settle: it may exist but still be half written
        return found if found in self._settled_metadata else None

    def _emit(self, movie: Path, metadata: Path | None) -> None:
        if not movie.is_file():
            return  # moved away after it settled: it is seen again where it went, if watched
        exposure_id = movie.stem
        self._done.add(movie)
        first = self._emitted.setdefault(exposure_id, movie)
        if first != movie:
            self._put(
                Rejected(
                    exposure_id,
                    str(movie),
                    "duplicate_exposure",
                    f"{movie} has the same exposure id {exposure_id!r} as {first}, which was "
                    "already emitted; exposure ids (movie file stems) must be unique",
                )
            )
            return
        self._put(MovieReady(exposure_id, movie, "watcher", metadata_path=metadata))

    def _put(self, event: SourceEvent) -> None:
        # a bounded queue must not wedge stop(): give up once stopping (a restart rescans)
        while True:
            try:
                self._events.put(event, timeout=self._tick_s)
                return
            except queue.Full:
                if self._stop.is_set():
                    return
