"""One exposure on its way through the worker's stages: its timings and the flags found."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from causalscope.models.optics import Optics
from causalscope.models.records import AcquisitionMetadata, ExposureRecord, GateFlag

__all__ = ["Run"]

T = TypeVar("T")


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


@dataclass
class Run:
    """One exposure on its way through the stages: what it is, and what was found so far."""

    exposure_id: str
    movie_path: str
    metadata: AcquisitionMetadata | None
    device: str
    timer: Timer = field(default_factory=Timer)
    flags: list[GateFlag] = field(default_factory=list)

    @property
    def dose_e_per_a2(self) -> float | None:
        """The metadata's total dose."""
        return self.metadata.dose_e_per_a2 if self.metadata is not None else None

    def attempt(self, stage: str, timing: str, call: Callable[[], T]) -> T | None:
        """``call()`` timed as ``timing``; its failure becomes the flag ``<stage>_error``."""
        try:
            with self.timer.stage(timing):
                return call()
        except (ValueError, RuntimeError) as error:
            self.flags.append(_stage_error(stage, self.movie_path, error))
        return None

    def rejected(self, code: str, message: str, optics: Optics | None) -> ExposureRecord:
        """The record of input no stage can take."""
        flag = GateFlag(code=code, severity="fail", message=f"{self.movie_path}: {message}")
        return ExposureRecord(status="fail", flags=[flag], **self.head(optics))

    def head(self, optics: Optics | None) -> dict[str, object]:
        """The record's fields that name the exposure and its optics."""
        return {
            "exposure_id": self.exposure_id,
            "movie_path": self.movie_path,
            "pixel_size_angstrom": None if optics is None else optics.pixel_size_angstrom,
            "voltage_kv": None if optics is None else optics.voltage_kv,
            "spherical_aberration_mm": None if optics is None else optics.spherical_aberration_mm,
            "amplitude_contrast": None if optics is None else optics.amplitude_contrast,
            "metadata": self.metadata,
            "device": self.device,
        }


def _stage_error(stage: str, movie_path: str, error: Exception) -> GateFlag:
    return GateFlag(
        code=f"{stage}_error",
        severity="fail",
        message=f"{movie_path}: {stage} failed: {error}",
    )
