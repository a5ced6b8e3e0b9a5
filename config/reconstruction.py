"""The running reconstructions' settings: streaming 2D classes and a gold-standard 3D map."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from causalscope.config._common import OptionalPath, Section

__all__ = ["ReconstructionSettings"]


class ReconstructionSettings(Section):
    """The running reconstructions: streaming 2D classes and a gold-standard 3D map."""

    enabled: bool = Field(
        True,
        description=(
            "Classify the extracted particles in 2D as they arrive, and refine a 3D map when "
            "a reference is given (needs picking.extract)."
        ),
    )
    reference: OptionalPath = Field(
        None,
        description=(
            "An MRC map of the particle to refine against, low-passed to 30 A first; '' = none: "
            "an ab-initio map from the selected 2D classes' particles once there are "
            "ab_initio_min_particles of them. Stored absolute; the file must exist when "
            "settings load."
        ),
        examples=["reference/apoferritin_map.mrc"],
    )
    symmetry: str = Field(
        "C1",
        pattern=r"^([CcDd][1-9][0-9]*|[TtOoIi])$",
        description="Point-group symmetry of the map: C1, Cn, Dn, T, O or I.",
    )
    box_px: int = Field(
        64,
        ge=16,
        le=512,
        multiple_of=2,
        description="Particles are Fourier-binned to this box for the 3D map (never enlarged).",
    )
    classes: int = Field(50, ge=1, le=500, description="2D classes.")
    class_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Classes whose junk score is below this are selected automatically.",
    )
    update_every: int = Field(
        1000,
        ge=1,
        le=10_000_000,
        description=(
            "New particles that trigger an update of the classes and the map; raised "
            "automatically while an update takes longer than collecting them."
        ),
    )
    target_resolution_angstrom: float = Field(
        3.0, gt=0, le=100, description="The forecast's target: particles and time to reach it."
    )
    session_hours: float = Field(
        0.0,
        ge=0,
        le=1000,
        description=(
            "The session's planned length in hours (from its first particles); with it, the "
            "forecast gives the resolution expected at the end at the current particle rate "
            "and the probability of reaching the target. 0 = no plan."
        ),
        examples=[24.0],
    )
    ab_initio_min_particles: int = Field(
        1000,
        ge=100,
        le=10_000_000,
        description=(
            "Without a reference: particles in selected 2D classes that start an ab-initio map "
            "(stochastic gradient descent, as cryoSPARC), then refined as against a reference."
        ),
    )

    novelty_index: OptionalPath = Field(
        None,
        description=(
            "The folder of the novelty index of known structures and junk (`causalscope index "
            "build`); '' = ~/.local/share/causalscope/novelty-index. Without an index the 2D "
            "classes get no Novelty and the classifier's junk score alone recommends."
        ),
    )
    novelty_scale: float = Field(
        0.8,
        gt=0,
        le=2,
        description="Novelty = 1 - exp(-(d / scale)^2) of the distance d to the nearest structure.",
    )

    @field_validator("reference")
    @classmethod
    def _reference_is_a_map(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser().absolute()
        if path.suffix.lower() not in (".mrc", ".map"):
            raise ValueError(f"expected an MRC map (.mrc, .map), got {str(path)!r}")
        if not path.is_file():
            raise ValueError(f"reference map {str(path)!r} does not exist")
        return path
