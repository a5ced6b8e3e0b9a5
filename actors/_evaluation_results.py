"""What the session evaluator answers after an update: its classes, map and forecast.

Plain frozen dataclasses (Ray sends them by pickle; :meth:`EvaluationUpdate.to_dict` gives the
JSON the store publishes). Resolutions the data do not reach are ``None`` (JSON ``null``),
never infinity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ClassRow",
    "ClassSetUpdate",
    "EvaluationUpdate",
    "ForecastUpdate",
    "MapUpdate",
    "finite_or_none",
]


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None where it is infinite or NaN."""
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ClassRow:
    """One 2D class after an update.

    ``label``: the operator's 'select' or 'reject', or None; ``selected`` is the automatic
    choice (``auto_selected``) unless a label overrides it.
    """

    class_index: int
    particles: int
    effective_sample_size: float
    resolution_angstrom: float | None
    junk_score: float
    auto_selected: bool
    selected: bool
    label: str | None
    #: against the novelty index (None without one): 1 - exp(-(d / scale)^2) of the distance
    #: to the nearest known structure, the nearest entry's label and kind, both distances
    novelty: float | None = None
    nearest: str | None = None
    nearest_kind: str | None = None
    structure_distance: float | None = None
    junk_distance: float | None = None
    #: 'accept', 'reject' or 'look', and why (:func:`models.novelty.recommend_class`)
    recommendation: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ClassSetUpdate:
    """The classes of one update, and the files written for them."""

    n_classes: int
    particles: int
    selected_particles: int
    pixel_size_angstrom: float
    averages_path: str
    gallery_path: str
    model_star_path: str
    selected_star_path: str
    classes: tuple[ClassRow, ...]


@dataclass(frozen=True)
class MapUpdate:
    """The 3D map of one update: its gold-standard FSC and files."""

    particles: int
    symmetry: str
    pixel_size_angstrom: float
    resolution_angstrom: float | None
    resolution_unmasked_angstrom: float | None
    resolution_fsc_05_angstrom: float | None
    fsc_masked: tuple[float, ...]
    fsc_unmasked: tuple[float, ...]
    half_map_1: str
    half_map_2: str
    map_path: str
    fsc_star_path: str
    coverage: float
    largest_gap_deg: float
    #: the reference's correlation with itself under each operator of ``symmetry`` (none for
    #: C1 or without a reference): whether the symmetry set fits the map refined against
    symmetry_correlations: tuple[float, ...] = ()
    #: the map refinement started from: the reference, or the session's ab-initio map
    initial_model: str = ""
    #: whether that was an ab-initio map (whose hand projections cannot tell)
    ab_initio: bool = False
    #: against the novelty index (None without one): the Novelty of the map (median over
    #: 50 views of the distance to the nearest known structure) and the nearest entry's label
    novelty: float | None = None
    nearest: str | None = None


@dataclass(frozen=True)
class ForecastUpdate:
    """Resolution against particles at one update.

    ``bfactor_angstrom2`` (with its standard error) is the Rosenthal-Henderson fit of the
    updates' resolutions against their particle counts (None before three updates);
    ``ssnr_bfactor_angstrom2`` the fit to the current FSC's shells. The particles needed for
    ``target_resolution_angstrom``, the resolution at twice the particles, and the hours to the
    target at ``particles_per_hour`` come from the SSNR fit (None where it gives none).

    With a planned session length (``reconstruction.session_hours``): the ``hours_left`` of
    it, the particles expected by then at the current rate, the resolution the SSNR fit
    expects from them and the probability of reaching the target
    (:func:`models.reconstruction.forecast.session_end`); None without a plan, or before the
    rate is known.
    """

    particles: int
    bfactor_angstrom2: float | None
    bfactor_sd_angstrom2: float | None
    ssnr_bfactor_angstrom2: float | None
    target_resolution_angstrom: float
    particles_needed: float | None
    resolution_at_double_angstrom: float | None
    particles_per_hour: float | None
    hours_to_target: float | None
    hours_left: float | None = None
    particles_at_end: float | None = None
    resolution_at_end_angstrom: float | None = None
    p_reach_target: float | None = None


@dataclass(frozen=True)
class EvaluationUpdate:
    """One update of the session's running reconstructions (``version`` counts them)."""

    version: int
    particles: int
    exposures: int
    seconds: float
    class_set: ClassSetUpdate | None
    map: MapUpdate | None
    forecast: ForecastUpdate | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)
