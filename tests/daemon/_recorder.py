"""A reporter for tests: the scheduler's protocol, remembering what it is told."""

from __future__ import annotations

import sys
import threading
import traceback
from typing import Any

from causalscope.models.records import ExposureRecord


class Recorder:
    """A reporter (the scheduler's protocol) that remembers everything it is told."""

    def __init__(self) -> None:
        self.commits: list[tuple[str, str]] = []
        self.quarantines: list[tuple[str | None, str, str]] = []
        self.skips: list[str] = []
        self.problems: list[tuple[str, str]] = []

    def committed(self, record: ExposureRecord, latency_s: float) -> None:
        self.commits.append((record.exposure_id, record.status))

    def quarantined(self, exposure_id: str | None, origin: str, code: str, reason: str) -> None:
        self.quarantines.append((exposure_id, code, reason))

    def skipped(self, exposure_id: str, state: str) -> None:
        self.skips.append(exposure_id)

    def problem(self, title: str, message: str) -> None:
        self.problems.append((title, message))


class SessionThread(threading.Thread):
    """``session.run`` on a thread that keeps its error and can say where it is (a test that
    waits in vain for a commit shows why: the error that ended the loop, or its stack now)."""

    def __init__(self, session: Any) -> None:
        super().__init__(target=self._run, args=(session,), daemon=True, name="session.run")
        self.error: BaseException | None = None

    def _run(self, session: Any) -> None:
        try:
            session.run()
        except BaseException as error:
            self.error = error
            raise

    def describe(self) -> str:
        """The loop's state: its error with traceback, or the stack it is in now."""
        if self.error is not None:
            trace = "".join(traceback.format_exception(self.error))
            return f"session.run ended with an error:\n{trace}"
        frame = sys._current_frames().get(self.ident or -1)
        if frame is None:
            return f"session.run {'is running' if self.is_alive() else 'has ended'} (no stack)"
        return "session.run is in:\n" + "".join(traceback.format_stack(frame))
