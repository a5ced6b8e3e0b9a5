"""Typed records that cross package boundaries (pydantic models, no torch).

Field names follow the truth file's names and carry their units (see :mod:`models.units`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AcquisitionMetadata"]


class AcquisitionMetadata(BaseModel):
    """What the microscope software wrote beside one movie (EPU XML or a SerialEM .mdoc).

    Every value is optional because real files omit fields; a consumer falls back to the
    configured microscope where a value is missing. Defocus is positive for underfocus (EPU
    writes the applied defocus as a negative number of metres; the parser converts).
    """

    model_config = ConfigDict(frozen=True)

    source_path: str = Field(description="The metadata file this was read from.")
    source_format: Literal["epu", "mdoc"]
    movie_name: str | None = Field(None, description="File name of the movie it describes.")
    pixel_size_angstrom: float | None = None
    voltage_kv: float | None = None
    spherical_aberration_mm: float | None = None
    dose_e_per_a2: float | None = Field(None, description="Total dose of the exposure.")
    dose_rate_e_per_px_per_s: float | None = None
    n_frames: int | None = None
    exposure_time_s: float | None = None
    target_defocus_um: float | None = Field(
        None, description="Nominal defocus the operator asked for, positive underfocus."
    )
    beam_shift: tuple[float, float] | None = Field(
        None, description="Beam/image shift in the software's own units (EPU: BeamShift)."
    )
    image_shift: tuple[float, float] | None = None
    stage_position_um: tuple[float, float, float] | None = None
    stage_tilt_deg: float | None = None
    magnification: float | None = None
    spot_size: int | None = None
    camera: str | None = None
    microscope: str | None = None
    timestamp: datetime | None = None
    grid_square: str | None = None
    foil_hole: str | None = None
    extra: dict[str, str] = Field(default_factory=dict, description="Other values, verbatim.")
