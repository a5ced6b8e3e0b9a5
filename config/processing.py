"""Settings of the per-exposure processing: motion correction, CTF estimation and the gate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from causalscope.config._common import OptionalPath, Section
from causalscope.config.picker_tuning import PickerTuningSettings
from causalscope.config.reconstruction import ReconstructionSettings
from causalscope.config.resilience import ResilienceSettings
from causalscope.config.scoring import ScoringSettings

__all__ = [
    "REFERENCE_SUFFIXES",
    "CausalSettings",
    "CtfSettings",
    "GateSettings",
    "MotionSettings",
    "PickingSettings",
    "ProcessingSettings",
    "reference_kind",
]


class MotionSettings(Section):
    """Motion correction: global alignment, then a grid of patches (as MotionCor2)."""

    patches_x: int = Field(5, ge=1, le=32, description="Patches across the frame width.")
    patches_y: int = Field(5, ge=1, le=32, description="Patches across the frame height.")
    bfactor_angstrom2: float = Field(
        80.0,
        ge=0,
        le=10000,
        description=(
            "B-factor in A^2 applied to frames before the global alignment (RELION's default is "
            "150; 80 halved the trajectory error of simulated 1024^2 x 20 movies on seed 0)."
        ),
    )
    iterations: int = Field(10, ge=1, le=100, description="Maximum alignment iterations.")
    tolerance_px: float = Field(
        0.01,
        gt=0,
        le=10,
        description="Stop iterating once no frame's shift changes by more than this.",
    )
    patch_iterations: int = Field(
        1,
        ge=1,
        le=100,
        description=(
            "Alignment rounds of each patch, which starts from the global shifts (with the "
            "measured weights more rounds did not lower the local model's error on simulated "
            "movies)."
        ),
    )


class CtfSettings(Section):
    """CTF estimation on the motion-corrected sum (as CTFFIND)."""

    box_px: Annotated[int, Field(ge=64, le=4096)] | Literal["auto"] = Field(
        "auto",
        description=(
            "Size of the power-spectrum tiles; 'auto' = 512, then refit with tiles that sample "
            "the Thon rings finely enough at high defocus (up to a quarter of the micrograph)."
        ),
    )
    min_resolution_angstrom: float = Field(
        30.0, gt=0, le=500, description="Lowest resolution fitted (the larger number)."
    )
    max_resolution_angstrom: float = Field(
        4.0, gt=0, le=100, description="Highest resolution fitted (the smaller number)."
    )
    defocus_min_um: float = Field(
        0.2, ge=0, le=50, description="Smallest defocus searched, in um (positive = underfocus)."
    )
    defocus_max_um: float = Field(5.0, gt=0, le=50, description="Largest defocus searched, in um.")
    estimate_phase_shift: bool = Field(
        False, description="Fit an additional phase shift (phase plate data)."
    )

    def fit_options(
        self, image_shape: tuple[int, ...], pixel_size_angstrom: float
    ) -> dict[str, Any]:
        """These settings as :func:`models.ctf_estimation.estimate_ctf` arguments for an image
        of ``image_shape``: a fixed tile no larger than the image, the band no finer than
        Nyquist (with 5 % to spare)."""
        largest = int(min(image_shape)) // 2 * 2
        box = "auto" if self.box_px == "auto" else min(self.box_px, largest)
        return {
            "box_px": box,
            "min_resolution_angstrom": self.min_resolution_angstrom,
            "max_resolution_angstrom": max(self.max_resolution_angstrom, 2.1 * pixel_size_angstrom),
            "defocus_min_um": self.defocus_min_um,
            "defocus_max_um": self.defocus_max_um,
            "estimate_phase_shift": self.estimate_phase_shift,
        }

    @field_validator("box_px")
    @classmethod
    def _box_is_even(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value % 2:
            raise ValueError(f"expected an even number of pixels, got {value}")
        return value

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> CtfSettings:
        if self.min_resolution_angstrom <= self.max_resolution_angstrom:
            raise ValueError(
                f"min_resolution_angstrom ({self.min_resolution_angstrom:g}) must be larger than "
                f"max_resolution_angstrom ({self.max_resolution_angstrom:g}): resolution in "
                "Angstrom is a distance, so the low-resolution limit is the larger number"
            )
        if self.defocus_min_um >= self.defocus_max_um:
            raise ValueError(
                f"defocus_min_um ({self.defocus_min_um:g}) must be smaller than "
                f"defocus_max_um ({self.defocus_max_um:g})"
            )
        return self


class GateSettings(Section):
    """The sanity gate: results outside these limits are failures, never passed on silently.

    The limits catch broken results (blank frames, -9999 drifts, wild CTF fits), not merely
    poor exposures; quality is judged by the causal model and the scores.
    """

    max_total_drift_px: float = Field(
        200.0, gt=0, le=10000, description="Largest plausible total drift over an exposure."
    )
    max_frame_shift_px: float = Field(
        50.0, gt=0, le=10000, description="Largest plausible shift between consecutive frames."
    )
    max_ctf_fit_resolution_angstrom: float = Field(
        15.0,
        gt=0,
        le=500,
        description="A CTF fit resolution worse (larger) than this fails the gate.",
    )
    max_astigmatism_angstrom: float = Field(
        5000.0, gt=0, le=100_000, description="Largest plausible |defocus U - defocus V|."
    )
    min_ctf_figure_of_merit: float = Field(
        0.05,
        ge=-1,
        le=1,
        description="A CTF fit with a lower figure of merit (correlation with the rings) fails.",
    )
    dose_tolerance_fraction: float = Field(
        0.3,
        gt=0,
        le=10,
        description=(
            "Dose measured from the counts may differ from the metadata's by this fraction "
            "before the exposure fails (zero-loss filtering of thick ice removes up to ~20 %)."
        ),
    )
    blank_frame_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A frame whose mean is below this fraction of the median frame is blank.",
    )
    min_total_dose_e_per_a2: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="Less total dose than this means a blank or failed exposure.",
    )
    max_total_dose_e_per_a2: float = Field(
        300.0, gt=0, le=10000, description="More total dose than this means wrong metadata."
    )

    @model_validator(mode="after")
    def _dose_range_is_ordered(self) -> GateSettings:
        if self.min_total_dose_e_per_a2 >= self.max_total_dose_e_per_a2:
            raise ValueError(
                f"min_total_dose_e_per_a2 ({self.min_total_dose_e_per_a2:g}) must be smaller than "
                f"max_total_dose_e_per_a2 ({self.max_total_dose_e_per_a2:g})"
            )
        return self


#: what ``picking.reference`` may be: an MRC map, or a PDB/mmCIF model (optionally gzipped)
REFERENCE_SUFFIXES = (".mrc", ".map", ".pdb", ".ent", ".cif", ".mmcif")


def reference_kind(path: Path) -> Literal["map", "model"] | None:
    """``"map"`` or ``"model"`` from the suffix (``.gz`` aside); None for anything else."""
    name = path.name.lower().removesuffix(".gz")
    suffix = Path(name).suffix
    if suffix not in REFERENCE_SUFFIXES:
        return None
    return "map" if suffix in (".mrc", ".map") else "model"


class PickingSettings(Section):
    """Restoration and particle picking after the CTF fit (skipped when the fit is unsupported)."""

    enabled: bool = Field(
        True, description="Wiener-restore each micrograph and pick its particles."
    )
    denoise: bool = Field(
        True,
        description=(
            "Noise2Noise-denoise the even/odd half sums (the shipped model), phase-flip the sum "
            "and pick on it; about 1.5 s per 2048 px exposure on one CPU thread."
        ),
    )
    particle_diameter_angstrom: float = Field(
        120.0,
        gt=5,
        le=5000,
        description="Particle diameter in Angstrom: the pickers' scale and spacing.",
    )
    picker: Literal["learned", "blob"] = Field(
        "learned",
        description=(
            "Without a reference: 'learned' (the shipped network, on the dose-weighted sum; "
            "F1 0.87 on real EMPIAR-10028 micrographs against 0.84 for blob) or 'blob' (a "
            "difference of Gaussians on the restored micrograph)."
        ),
    )
    reference: OptionalPath = Field(
        None,
        description=(
            "Template picking: an MRC map or a PDB/mmCIF model of the particle, projected into "
            "template_views templates; '' = the picker above. A relative path is taken from the "
            "working directory and stored absolute; the file must exist when settings load."
        ),
        examples=["reference/apoferritin.mrc"],
    )
    template_views: int = Field(
        12,
        ge=1,
        le=500,
        description=(
            "Orientations projected from the reference (the first unrotated, the rest random); "
            "each adds one correlation per micrograph."
        ),
    )
    finetune_every: int = Field(
        10,
        ge=0,
        le=100_000,
        description=(
            "Fine-tune the denoiser on the session's half sums after every N exposures "
            "(0: never); the checkpoint is kept beside the session as denoiser.pt."
        ),
    )
    finetune_steps: int = Field(
        200, ge=1, le=100_000, description="Training steps per fine-tuning round."
    )
    threshold: Annotated[float, Field(ge=-10, le=100)] | Literal["auto"] = Field(
        0.5,
        description=(
            "Blob and template picking: lowest pick score (robust z of the picker's response: "
            "the blob filter's, or the best template correlation); 'auto' splits the peaks' "
            "scores in two (Otsu), which suits crowded micrographs with many weak peaks."
        ),
    )
    learned_threshold: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = Field(
        "auto",
        description=(
            "Learned picking: lowest probability of a pick; 'auto' = the model's calibrated cut, "
            "lowered on a micrograph whose own peaks show many more particles than it keeps."
        ),
    )
    exclude: bool = Field(
        True,
        description=(
            "Drop picks on dense matter (carbon, ice contamination, aggregates), where the ice "
            "is missing (cracks, empty holes) and within a radius of the image's edge; the "
            "area excluded per reason is stored with the exposure."
        ),
    )
    exclude_contrast: float = Field(
        0.03,
        gt=0,
        lt=1,
        description=(
            "How far the local mean of counts (50 A scale) must fall below or rise above the "
            "ice's for an area to be excluded, as a fraction of the ice's counts; a pick whose "
            "core (within a quarter diameter) is darker than the median pick's by two thirds of it "
            "is dropped too (thin haze of aggregates)."
        ),
    )
    extract: bool = Field(
        True, description="Write the phase-flipped, normalised particles (MRCS + RELION STAR)."
    )
    box_scale: float = Field(
        1.5,
        ge=1.0,
        le=4.0,
        description="Extraction and template box as a multiple of the diameter.",
    )
    tuning: PickerTuningSettings = Field(default_factory=PickerTuningSettings)

    @field_validator("reference")
    @classmethod
    def _reference_is_a_readable_file(cls, value: Path | None) -> Path | None:
        # checked here, when the session starts, rather than on the first exposure; absolute,
        # so that workers started in another folder (Ray) find the same file
        if value is None:
            return None
        path = value.expanduser().absolute()
        if reference_kind(path) is None:
            raise ValueError(
                f"expected an MRC map or a PDB/mmCIF model ({', '.join(REFERENCE_SUFFIXES)}), "
                f"got {str(path)!r}"
            )
        if not path.is_file():
            raise ValueError(f"reference file {str(path)!r} does not exist")
        if not os.access(path, os.R_OK):
            raise ValueError(f"reference file {str(path)!r} is not readable")
        return path


class CausalSettings(Section):
    """The session's causal model: what limits each exposure, learned live."""

    enabled: bool = Field(
        True,
        description=(
            "Learn the causal model from each usable exposure and attribute its lost "
            "resolution to causes (ice, dose, drift, defocus, astigmatism, beam tilt, "
            "particles)."
        ),
    )
    beam_tilt_mrad_per_um: float = Field(
        0.25,
        ge=0,
        le=100,
        description=(
            "Beam tilt (coma) induced per um of image shift, mrad/um: the beam-tilt factor is "
            "this times |image shift| from the EPU/mdoc metadata (0 without it)."
        ),
    )
    discount: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Share of the old evidence kept when a change of regime is detected.",
    )
    wiener_prior: bool = Field(
        True,
        description=(
            "Raise an exposure's own spectral-SNR B-factor (the Wiener filter's) to the lowest "
            "the model allows for its factors: a fit that went astray low is pulled back."
        ),
    )
    prior_min_exposures: int = Field(
        20, ge=1, le=100_000, description="Exposures the model needs before its prior is used."
    )
    prior_z: float = Field(
        2.0,
        gt=0,
        le=100,
        description="Width of that range in predictive standard deviations of the model.",
    )


class ProcessingSettings(Section):
    """Per-exposure processing: where it runs, how much at once, and each stage's parameters."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where exposure actors compute; 'auto' uses CUDA when present."
    )
    max_in_flight: int = Field(
        4, ge=1, le=1024, description="Exposures handed to actors and not yet finished."
    )
    dose_weighting: bool = Field(
        True, description="Weight frames by accumulated dose (Grant & Grigorieff 2015)."
    )
    micrographs_float16: bool = Field(
        False,
        description=(
            "Write the micrographs (sums, Wiener-filtered, denoised) as 16-bit floats (MRC mode"
            " 12, read by RELION 4+ and cryoSPARC): half the disk; one whose rounding would add"
            " over 1e-4 of its variance is written as float32."
        ),
    )
    motion: MotionSettings = Field(default_factory=MotionSettings, description="Motion.")
    ctf: CtfSettings = Field(default_factory=CtfSettings, description="CTF estimation.")
    gate: GateSettings = Field(default_factory=GateSettings, description="Sanity gate.")
    picking: PickingSettings = Field(
        default_factory=PickingSettings, description="Restoration and picking."
    )
    causal: CausalSettings = Field(
        default_factory=CausalSettings, description="The session's causal model."
    )
    reconstruction: ReconstructionSettings = Field(
        default_factory=ReconstructionSettings, description="Running reconstructions."
    )
    scoring: ScoringSettings = Field(
        default_factory=ScoringSettings, description="Scores of exposures and reconstructions."
    )
    resilience: ResilienceSettings = Field(
        default_factory=ResilienceSettings,
        description="Staying up: memory pressure and failed workers.",
    )
