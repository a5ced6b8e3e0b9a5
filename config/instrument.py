"""Settings of the instrument: the microscope's optics and the detector.

Ranges are wide enough for every instrument in use and narrow enough to catch a value given
in the wrong unit (300000 for 300 kV, 2700 for Cs 2.7 mm).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from causalscope.config._common import OptionalPath, Section

__all__ = ["DetectorSettings", "MicroscopeSettings"]


class MicroscopeSettings(Section):
    """The microscope's optics, used where a movie's metadata does not say otherwise."""

    name: str = Field("generic 300 kV microscope", description="Instrument name, for records.")
    voltage_kv: float = Field(300.0, ge=60, le=400, description="Acceleration voltage in kV.")
    spherical_aberration_mm: float = Field(
        2.7, ge=0, le=10, description="Spherical aberration Cs in mm (0 for a Cs corrector)."
    )
    chromatic_aberration_mm: float = Field(
        2.7, ge=0, le=10, description="Chromatic aberration Cc in mm (temporal coherence)."
    )
    amplitude_contrast: float = Field(
        0.07, ge=0, lt=1, description="Amplitude contrast, a fraction (0.07 to 0.1 for ice)."
    )
    pixel_size_angstrom: float = Field(
        1.0, ge=0.1, le=20, description="Pixel size of the movies at the specimen, in Angstrom."
    )
    energy_spread_ev: float = Field(
        0.8, ge=0, le=5, description="Energy spread of the source in eV (X-FEG 0.8, cold FEG 0.3)."
    )
    illumination_aperture_mrad: float = Field(
        0.01,
        ge=0,
        le=5,
        description="Illumination semi-angle in mrad (spatial coherence); near-parallel ~0.01.",
    )
    energy_filter: bool = Field(False, description="Whether a zero-loss energy filter is in use.")
    energy_filter_slit_ev: float = Field(
        20.0,
        gt=0,
        le=200,
        description="Energy-filter slit width in eV; used when the filter is on.",
    )


class DetectorSettings(Section):
    """The detector and how its movies are written and corrected."""

    name: str = Field("generic counting camera", description="Detector name, for records.")
    kind: Literal["counting", "eer", "integrating"] = Field(
        "counting",
        description="Read-out mode: electron counting, Falcon EER event recording, or integrating.",
    )
    frame_format: Literal["mrc", "tiff", "eer"] = Field(
        "mrc", description="File format of the movies (EER files need kind = 'eer')."
    )
    width_px: int = Field(4096, ge=64, le=32768, description="Frame width in pixels (x, fast).")
    height_px: int = Field(4096, ge=64, le=32768, description="Frame height in pixels (y, slow).")
    mtf: str = Field(
        "analytic",
        min_length=1,
        description=(
            "Detector MTF: 'analytic' (a built-in model of a counting detector), another built-in "
            "name, or the path of a RELION MTF STAR file."
        ),
    )
    eer_upsampling: int = Field(
        1, description="EER rendering: 1 = physical pixels, 2 or 4 = super-resolution grid."
    )
    eer_grouping: int = Field(
        32, ge=1, le=10000, description="EER frames summed into one movie fraction."
    )
    gain_reference: OptionalPath = Field(
        None,
        description="Gain reference (MRC or TIFF) multiplied into each frame; '' = none.",
        examples=["gain/CountRef.mrc"],
    )
    gain_rotation: int = Field(
        0,
        ge=0,
        le=3,
        description="Rotate the gain reference by this many 90-degree turns (RELION --gain_rot).",
    )
    gain_flip: Literal["none", "x", "y"] = Field(
        "none",
        description=(
            "Flip the gain reference after rotating: 'y' upside down (RELION --gain_flip 1), "
            "'x' left-right (--gain_flip 2)."
        ),
    )
    defects_file: OptionalPath = Field(
        None,
        description="Defect map (image or SerialEM defects text) of bad pixels; '' = none.",
        examples=["gain/defects.txt"],
    )
    counts_per_electron: float = Field(
        1.0, gt=0, le=10000, description="Detector counts recorded per incident electron."
    )

    @field_validator("eer_upsampling")
    @classmethod
    def _upsampling_is_power_of_two(cls, value: int) -> int:
        if value not in (1, 2, 4):
            raise ValueError(f"expected 1, 2 or 4, got {value}")
        return value

    @model_validator(mode="after")
    def _eer_format_matches_kind(self) -> DetectorSettings:
        if (self.frame_format == "eer") != (self.kind == "eer"):
            raise ValueError(
                f"frame_format = {self.frame_format!r} does not match kind = {self.kind!r}: "
                "EER files come only from a detector in EER mode (set both to 'eer')"
            )
        return self
