"""The typed values the exposure worker's stages (:mod:`actors._stages`) take and return.

Inputs are frozen dataclasses that check themselves when made: a bad value raises
``ValueError`` naming the field and the value. Outputs are frozen dataclasses of records
(:mod:`models.records`) and tensors. Units are in the names (:mod:`models.units`): shifts and
picks in px, defocus in Angstrom, B-factors in Angstrom^2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from causalscope.models.optics import Optics
from causalscope.models.records import (
    AcquisitionMetadata,
    CtfRecord,
    FrameStatistics,
    GateFlag,
    GateStatus,
    MotionRecord,
)

if TYPE_CHECKING:
    import torch

    from causalscope.actors._restore import Restoration
    from causalscope.models.motion import MotionCorrection

__all__ = [
    "CalibrationMismatch",
    "CtfInput",
    "CtfOutput",
    "GateInput",
    "GateOutput",
    "MotionInput",
    "MotionOutput",
    "OutputInput",
    "Outputs",
    "RestoreInput",
    "RestoreOutput",
    "Stage",
]

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)


class Stage(Protocol[In, Out]):
    """One step of the worker: ``stage(value) -> output``; ``name`` names its failures."""

    name: str

    def __call__(self, value: In, /) -> Out: ...


class CalibrationMismatch(ValueError):
    """The gain reference or defect mask is not the size of the frames."""


def _image(name: str, value: Any, shape: tuple[int, ...] | None = None) -> None:
    """Raise unless ``value`` is a 2-D array or tensor (of ``shape``, when given)."""
    if getattr(value, "ndim", None) != 2:
        seen = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
        raise ValueError(f"{name} must be a 2-D (h, w) image; got {seen}")
    if shape is not None and tuple(value.shape) != shape:
        raise ValueError(f"{name} is {tuple(value.shape)} but the image is {shape}")


@dataclass(frozen=True)
class MotionInput:
    """Raw ``(F, h, w)`` frames, their statistics, optics, and the metadata's total dose (None,
    0 or NaN: measured from the counts)."""

    frames: np.ndarray | torch.Tensor = field(repr=False)
    optics: Optics
    statistics: FrameStatistics
    dose_e_per_a2: float | None = None

    def __post_init__(self) -> None:
        shape = tuple(np.shape(self.frames))
        if len(shape) != 3 or shape[0] < 1:
            raise ValueError(f"frames must be (F, h, w) with F >= 1; got shape {shape}")
        if self.statistics.n_frames != shape[0]:
            raise ValueError(
                f"statistics describe {self.statistics.n_frames} frames but frames has {shape[0]}"
            )


@dataclass(frozen=True)
class MotionOutput:
    """The correction (sums as tensors, shifts in px) and its record."""

    correction: MotionCorrection = field(repr=False)
    record: MotionRecord
    dose_per_frame_e_per_a2: float


@dataclass(frozen=True)
class CtfInput:
    """The aligned, non-weighted ``(h, w)`` sum, its white-noise variance, and the optics."""

    image: torch.Tensor = field(repr=False)
    noise_variance: float | None
    optics: Optics

    def __post_init__(self) -> None:
        _image("image", self.image)
        if self.noise_variance is not None and not math.isfinite(self.noise_variance):
            raise ValueError(f"noise_variance must be finite or None; got {self.noise_variance}")

    @classmethod
    def of(cls, motion: MotionOutput, optics: Optics) -> CtfInput:
        """The CTF input of a motion correction."""
        correction = motion.correction
        return cls(correction.ctf_sum, correction.ctf_sum_noise_variance, optics)


@dataclass(frozen=True)
class CtfOutput:
    """The CTF record: defocus in Angstrom (positive underfocus), angles in degrees."""

    record: CtfRecord


@dataclass(frozen=True)
class GateInput:
    """What the gate judges; ``flags`` are the earlier stages' own findings."""

    statistics: FrameStatistics
    optics: Optics
    dose_e_per_a2: float | None = None
    motion: MotionRecord | None = None
    ctf: CtfRecord | None = None
    flags: tuple[GateFlag, ...] = ()

    def __post_init__(self) -> None:
        if self.motion is not None and len(self.motion.shifts_px) != self.statistics.n_frames:
            raise ValueError(
                f"motion.shifts_px has {len(self.motion.shifts_px)} frames but the statistics "
                f"describe {self.statistics.n_frames}"
            )


@dataclass(frozen=True)
class GateOutput:
    """Every finding (the stages' first) and the status they give."""

    flags: tuple[GateFlag, ...]
    status: GateStatus


@dataclass(frozen=True)
class RestoreInput:
    """The dose-weighted sum and its even/odd halves, a supported CTF fit, and what the causal
    model's prior reads (motion, the dose used, metadata)."""

    image: torch.Tensor = field(repr=False)
    halves: tuple[torch.Tensor, torch.Tensor] = field(repr=False)
    ctf: CtfRecord
    optics: Optics
    motion: MotionRecord | None = None
    dose_e_per_a2: float | None = None
    metadata: AcquisitionMetadata | None = None

    def __post_init__(self) -> None:
        _image("image", self.image)
        shape = tuple(self.image.shape)
        _image("halves[0] (even)", self.halves[0], shape)
        _image("halves[1] (odd)", self.halves[1], shape)
        if not self.ctf.supported:
            raise ValueError(
                f"ctf must be a supported fit to restore; got supported=False "
                f"({'; '.join(self.ctf.warnings) or 'no reason given'})"
            )

    @classmethod
    def of(
        cls,
        motion: MotionOutput,
        ctf: CtfOutput,
        optics: Optics,
        *,
        dose_e_per_a2: float | None,
        metadata: AcquisitionMetadata | None,
    ) -> RestoreInput:
        """The restoration input of a motion correction and its CTF."""
        c = motion.correction
        return cls(
            c.dose_weighted_sum,
            (c.even_sum, c.odd_sum),
            ctf.record,
            optics,
            motion=motion.record,
            dose_e_per_a2=dose_e_per_a2,
            metadata=metadata,
        )


@dataclass(frozen=True)
class RestoreOutput:
    """The restoration (images, picks in px, particle boxes) and the B range the prior set."""

    restoration: Restoration = field(repr=False)
    bfactor_bounds: tuple[float, float] | None


@dataclass(frozen=True)
class OutputInput:
    """What goes to disk for one exposure."""

    exposure_id: str
    motion: MotionOutput
    optics: Optics
    ctf: CtfRecord | None = None
    restoration: Restoration | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        name = self.exposure_id
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"exposure_id must be a file stem without folders; got {name!r}")


@dataclass(frozen=True)
class Outputs:
    """The written files by kind (``aligned_sum``, ``trajectory``, ``restored``, ...)."""

    files: Mapping[str, str]
