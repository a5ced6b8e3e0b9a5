"""A reporter for tests: the scheduler's protocol, remembering what it is told."""

from __future__ import annotations

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
